import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadTrainState } from '../../lib/train/checkpointState.ts';
import { trainRun, TrainingAbortedError, TrainingDivergedError } from '../../lib/train/trainer.ts';
import { initBackend } from '../../lib/util/backend.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

const sharedTest = hasShared('fixtures', 'clip-mini') && hasShared('data', 'chestxray14-sample') ? test.serial : test.serial.skip;

test.before(async () => {
  await initBackend();
});

// Two epochs of two steps each (16 training images, batch 8, micro-batches of 4).
function config(runs: string, cacheDir: string) {
  return {
    checkpoint: sharedPath('fixtures', 'clip-mini', 'hf-format'),
    data: sharedPath('data', 'chestxray14-sample'),
    runs,
    cacheDir,
    trainUnits: 'vision.block.2,vision.head,head',
    epochs: 2,
    batchSize: 8,
    microBatchSize: 4,
    lr: 1e-3,
    warmupSteps: 1,
    patience: 0,
    bootstrap: 0,
    seed: 7,
    limit: { train: 16, val: 8, test: 8 },
  };
}

function finalWeights(runDir: string): Record<string, Float32Array> {
  const state = loadTrainState(runDir)!;
  return Object.fromEntries(Object.entries(state.tensors.weights).map(([name, t]) => [name, t.data]));
}

sharedTest('resume matches uninterrupted run', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'resume-test-'));
  const cacheDir = path.join(root, 'cache');

  const uninterrupted = await trainRun(config(path.join(root, 'a'), cacheDir));

  // Abort at the first step of epoch 2: epoch 1 is saved, the run is not complete.
  const controller = new AbortController();
  const runsB = path.join(root, 'b');
  const error = await t.throwsAsync(
    trainRun(config(runsB, cacheDir), {
      signal: controller.signal,
      onProgress: (p) => {
        if (p.step === 3) controller.abort();
      },
    }),
    { instanceOf: TrainingAbortedError },
  );
  t.regex(error!.message, /aborted at step 3/);
  const runDirB = path.join(runsB, path.basename(uninterrupted.runDir));
  t.false(fs.existsSync(path.join(runDirB, 'complete.json')));
  const savedMeta = loadTrainState(runDirB)!.meta;
  t.is(savedMeta.epoch, 1);

  // The resumed run must not repeat epoch 1: it starts at step 3.
  const steps: number[] = [];
  const resumed = await trainRun(config(runsB, cacheDir), { onProgress: (p) => steps.push(p.step) });
  t.deepEqual(steps, [3, 4]);
  t.true(fs.existsSync(path.join(resumed.runDir, 'complete.json')));

  const a = finalWeights(uninterrupted.runDir);
  const b = finalWeights(resumed.runDir);
  t.deepEqual(Object.keys(b).sort(), Object.keys(a).sort());
  const bytes = (data: Float32Array) => Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  for (const name of Object.keys(a)) t.true(bytes(b[name]).equals(bytes(a[name])), `${name} differs from the uninterrupted run`);

  const historyA = JSON.parse(fs.readFileSync(path.join(uninterrupted.runDir, 'history.json'), 'utf8'));
  const historyB = JSON.parse(fs.readFileSync(path.join(resumed.runDir, 'history.json'), 'utf8'));
  t.deepEqual(historyB.epochs.map((e: { trainLoss: number }) => e.trainLoss), historyA.epochs.map((e: { trainLoss: number }) => e.trainLoss));
  t.deepEqual(resumed.metrics, uninterrupted.metrics);

  // Cost counts the finished epochs of the aborted process too. Step 3 ran twice, but like
  // imagesSeen, the lookups of an unfinished epoch are not counted.
  t.is(resumed.cost.imagesSeen, uninterrupted.cost.imagesSeen);
  t.is(resumed.cost.evalFlops, uninterrupted.cost.evalFlops);
  t.true(resumed.cost.evalSeconds > savedMeta.evalSeconds, 'evalSeconds lost the epoch before the abort');
  const lookups = (cost: typeof resumed.cost) => (cost.activationCacheHits ?? 0) + (cost.activationCacheMisses ?? 0);
  t.is(lookups(resumed.cost), lookups(uninterrupted.cost));
  fs.rmSync(root, { recursive: true });
});

sharedTest('activation cache serves later runs', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cache-test-'));
  const cacheDir = path.join(root, 'cache');
  const first = await trainRun({ ...config(path.join(root, 'runs'), cacheDir), trainUnits: 'head', epochs: 1 });
  // The first run computes the prefix once for each of the 16 train, 8 val and 8 test images.
  t.is(first.cost.activationCacheMisses, 32);
  const second = await trainRun({ ...config(path.join(root, 'runs'), cacheDir), trainUnits: 'head', epochs: 1, seed: 8 });
  t.not(second.runDir, first.runDir);
  t.is(second.cost.activationCacheMisses, 0);
  t.is(second.cost.activationCacheHits, 32);
  fs.rmSync(root, { recursive: true });
});

sharedTest('NaN loss stops with checkpoint', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'nan-test-'));
  const runs = path.join(root, 'runs');
  // Poison the head after step 3, so step 4 (epoch 2) computes a NaN loss.
  const error = await t.throwsAsync(
    trainRun(config(runs, path.join(root, 'cache')), {
      hooks: {
        afterStep: ({ step, head }) => {
          if (step === 3) head.weight.assign(tf.fill(head.weight.shape, NaN));
        },
      },
    }),
    { instanceOf: TrainingDivergedError },
  );
  t.regex(error!.message, /loss is NaN at step 4 \(epoch 2\)/);
  t.regex(error!.message, /Last good checkpoint: the state saved after epoch 1 in .*state, which is intact/);

  const runDir = path.join(runs, fs.readdirSync(runs).find((d) => d.startsWith('train-'))!);
  t.false(fs.existsSync(path.join(runDir, 'complete.json')));
  const state = loadTrainState(runDir)!;
  t.is(state.meta.epoch, 1);
  t.is(state.meta.step, 2);
  for (const [name, tensor] of Object.entries(state.tensors.weights)) t.true(tensor.data.every(Number.isFinite), `${name} has non-finite values`);
  fs.rmSync(root, { recursive: true });
});
