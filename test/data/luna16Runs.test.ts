import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runZeroShot } from '../../lib/eval/zeroShotRun.ts';
import { trainRun } from '../../lib/train/trainer.ts';
import { initBackend } from '../../lib/util/backend.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

const sharedTest = hasShared('fixtures', 'clip-mini') && hasShared('data', 'luna16-sample') ? test.serial : test.serial.skip;
const checkpoint = sharedPath('fixtures', 'clip-mini', 'hf-format');
const data = sharedPath('data', 'luna16-sample');

test.before(async () => {
  await initBackend();
});

function tempRuns(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-luna-runs-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function readJson(file: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

sharedTest('luna16 zero-shot run completes', async (t) => {
  const runs = tempRuns(t);
  const result = await runZeroShot({ checkpoint, data, dataset: 'luna16', split: 'test', limit: 8, runsDir: runs, bootstrap: 0, batchSize: 8 });
  t.true(fs.existsSync(path.join(result.runDir, 'complete.json')));
  const config = readJson(path.join(result.runDir, 'config.json'));
  t.is(config.dataset, 'luna16');
  t.is(config.kind, 'zero-shot');
  t.is(result.metrics?.n, 8);
  t.deepEqual(result.metrics.findings, ['Nodule']);
  t.true(result.metrics.perFinding.Nodule.positives > 0);
  t.is(typeof result.metrics?.meanAuroc, 'number');
  const rows = fs.readFileSync(path.join(result.runDir, 'predictions.csv'), 'utf8').trim().split('\n');
  t.is(rows.length, 1 + 8);
});

sharedTest('luna16 training run completes', async (t) => {
  const runs = tempRuns(t);
  const result = await trainRun({
    checkpoint,
    data,
    dataset: 'luna16',
    runs,
    epochs: 1,
    batchSize: 4,
    microBatchSize: 4,
    lr: 1e-3,
    warmupSteps: 1,
    bootstrap: 0,
    trainUnits: 'vision.head,head',
    limit: { train: 8, val: 6, test: 8 },
  });
  t.true(fs.existsSync(path.join(result.runDir, 'complete.json')));
  const config = readJson(path.join(result.runDir, 'config.json'));
  t.is(config.dataset, 'luna16');
  for (const file of ['history.json', 'cost.json', 'metrics.json', 'predictions.csv']) {
    t.true(fs.existsSync(path.join(result.runDir, file)), file);
  }
  t.is(result.metrics?.n, 8);
  t.is(typeof result.metrics?.meanAuroc, 'number');
});
