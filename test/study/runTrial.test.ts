// runTrial's summary of a training trial, as the study executors pass it to a search.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { runTrial } from '../../lib/study/runTrial.ts';
import { trialId } from '../../lib/study/trial.ts';
import { initBackend } from '../../lib/util/backend.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

const sharedTest = hasShared('fixtures', 'clip-mini') && hasShared('data', 'brats-sample') ? test.serial : test.serial.skip;

sharedTest('train trial summary counts images', async (t) => {
  await initBackend();
  const runsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-run-trial-'));
  t.teardown(() => fs.rmSync(runsDir, { recursive: true, force: true }));
  const config = {
    checkpoint: sharedPath('fixtures', 'clip-mini', 'hf-format'),
    data: sharedPath('data', 'brats-sample'),
    dataset: 'brats',
    method: 'search-trial',
    trainUnits: 'vision.head,head',
    epochs: 1,
    batchSize: 4,
    microBatchSize: 4,
    warmupSteps: 1,
    bootstrap: 0,
    limit: { train: 8, val: 6, test: 6 },
    evaluateTest: false,
  };

  const result = await runTrial({ id: trialId('train', config), kind: 'train', config, checkpointSha256: 'unchecked', dataFingerprint: 'unchecked' }, { runsDir });

  const cost = JSON.parse(fs.readFileSync(path.join(runsDir, result.runId, 'cost.json'), 'utf8'));
  t.is(result.summary.imagesSeen, 8);
  t.is(result.summary.imagesSeen, cost.imagesSeen);
  t.is(result.summary.testMeanAuroc, null);
  t.is(typeof result.summary.valMeanAuroc, 'number');
});
