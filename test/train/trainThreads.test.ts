import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readJson } from '../../lib/util/atomic.ts';
import { trainRun } from '../../lib/train/trainer.ts';
import { initBackend } from '../../lib/util/backend.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

const sharedTest = hasShared('fixtures', 'clip-mini') && hasShared('data', 'chestxray14-sample') ? test.serial : test.serial.skip;

test.before(async () => {
  await initBackend();
});

interface History {
  epochs: Array<{ trainLoss: number; valMeanAuroc: number | null }>;
}

sharedTest('two threads train like one', async (t) => {
  const runs = fs.mkdtempSync(path.join(os.tmpdir(), 'train-threads-'));
  const base = {
    checkpoint: sharedPath('fixtures', 'clip-mini', 'hf-format'),
    data: sharedPath('data', 'chestxray14-sample'),
    runs,
    trainUnits: 'vision.block.1-2,vision.head,head',
    epochs: 2,
    batchSize: 8,
    microBatchSize: 2,
    lr: 1e-3,
    warmupSteps: 1,
    bootstrap: 0,
    limit: { train: 16, val: 8, test: 8 },
    activationCache: false,
  };
  const oneThread = await trainRun({ ...base, trainThreads: 1, runs: path.join(runs, 'one') });
  const twoThreads = await trainRun({ ...base, trainThreads: 2, runs: path.join(runs, 'two') });

  // The thread count is not part of the run's identity.
  t.is(twoThreads.runId, oneThread.runId);
  t.is(oneThread.cost.trainThreads, 1);
  t.is(twoThreads.cost.trainThreads, 2);

  const historyOneThread = readJson<History>(path.join(oneThread.runDir, 'history.json'));
  const historyTwoThreads = readJson<History>(path.join(twoThreads.runDir, 'history.json'));
  historyOneThread.epochs.forEach((epoch, i) => {
    t.true(Math.abs(epoch.trainLoss - historyTwoThreads.epochs[i].trainLoss) < 1e-4, `epoch ${i + 1}: loss ${epoch.trainLoss} vs ${historyTwoThreads.epochs[i].trainLoss}`);
  });
  t.true(Math.abs(oneThread.metrics!.meanAuroc! - twoThreads.metrics!.meanAuroc!) < 1e-3);
  fs.rmSync(runs, { recursive: true });
});
