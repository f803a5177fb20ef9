import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import { ClipModel } from '../../lib/clip/model.ts';
import type { SourceAccuracy } from '../../lib/eval/forgetting.ts';
import { trainRun } from '../../lib/train/trainer.ts';
import { initBackend } from '../../lib/util/backend.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

const sharedTest =
  hasShared('fixtures', 'clip-mini') && hasShared('data', 'chestxray14-sample') && hasShared('data', 'natural', 'cifar10-test') ? test.serial : test.serial.skip;
const checkpoint = sharedPath('fixtures', 'clip-mini', 'hf-format');

// One training step of the head; forgetting on one image per CIFAR-10 class (10 images, one batch).
function config(runs: string, lr: number) {
  return {
    checkpoint,
    data: sharedPath('data', 'chestxray14-sample'),
    runs,
    trainUnits: 'head',
    epochs: 1,
    batchSize: 8,
    microBatchSize: 8,
    lr,
    bootstrap: 0,
    limit: { train: 8, val: 8, test: 8 },
    source: [{ name: 'natural', path: sharedPath('data', 'natural', 'cifar10-test'), limitPerClass: 1 }],
  };
}

/** Loads the checkpoint and counts calls of its image tower (only forgetting runs the whole tower). */
async function countingModel(): Promise<{ loaded: Awaited<ReturnType<typeof ClipModel.load>>; calls: () => number }> {
  const loaded = await ClipModel.load(checkpoint);
  const encodeImage = loaded.model.encodeImage.bind(loaded.model);
  let calls = 0;
  loaded.model.encodeImage = (pixels: tf.Tensor4D, options?: Parameters<ClipModel['encodeImage']>[1]) => {
    calls++;
    return encodeImage(pixels, options);
  };
  return { loaded, calls: () => calls };
}

sharedTest('forgetting before is cached', async (t) => {
  await initBackend();
  const runs = fs.mkdtempSync(path.join(os.tmpdir(), 'forgetting-cache-'));
  const { loaded, calls } = await countingModel();

  // The first run measures the set before and after fine-tuning: one batch each.
  const first = await trainRun(config(runs, 1e-3), { model: loaded });
  t.is(calls(), 2);

  // Another run (another learning rate) with the same checkpoint, set, limit and seed only measures "after".
  const second = await trainRun(config(runs, 2e-3), { model: loaded });
  t.not(second.runDir, first.runDir);
  t.is(calls(), 3);

  const read = (runDir: string) => JSON.parse(fs.readFileSync(path.join(runDir, 'forgetting-before.json'), 'utf8')) as SourceAccuracy[];
  t.deepEqual(read(second.runDir), read(first.runDir));
  t.is(read(second.runDir)[0].name, 'natural');
  t.is(fs.readdirSync(path.join(runs, '.cache', 'forgetting-before')).length, 1);
  loaded.model.dispose();
  fs.rmSync(runs, { recursive: true });
});

sharedTest('forgetting cache keyed by seed', async (t) => {
  await initBackend();
  const runs = fs.mkdtempSync(path.join(os.tmpdir(), 'forgetting-cache-'));
  const { loaded, calls } = await countingModel();
  await trainRun(config(runs, 1e-3), { model: loaded });
  // Another seed samples other images per class, so "before" is measured again.
  await trainRun({ ...config(runs, 1e-3), seed: 1 }, { model: loaded });
  t.is(calls(), 4);
  t.is(fs.readdirSync(path.join(runs, '.cache', 'forgetting-before')).length, 2);
  loaded.model.dispose();
  fs.rmSync(runs, { recursive: true });
});
