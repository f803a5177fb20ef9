// The trainer's frozen prefix on onnxruntime-node against runPrefix on TF.js, for each kind of
// split: before a block (tokens), before vision.head (class token) and before the head (features).
import test from 'ava';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import { ClipModel } from '../../lib/clip/model.ts';
import { parsePlan } from '../../lib/freeze/plan.ts';
import { runPrefix, splitPoint } from '../../lib/train/imagePath.ts';
import { createOnnxPrefix } from '../../lib/train/onnxPrefix.ts';
import { initBackend } from '../../lib/util/backend.ts';
import { benchConfig } from '../../bench/shapes.ts';

function hasOnnxRuntime(): boolean {
  try {
    createRequire(import.meta.url).resolve('onnxruntime-node');
    return true;
  } catch {
    return false;
  }
}

const ortTest = hasOnnxRuntime() ? test.serial : test.skip;
if (!hasOnnxRuntime()) console.log('onnxruntime-node is not installed: skipping the ONNX prefix tests.');

for (const [spec, truncate] of [['vision.block.2,head', 0], ['vision.head,head', 0], ['head', 0], ['head', 1]] as const) {
  ortTest(`onnx prefix matches tfjs: ${spec}, truncate ${truncate}`, async (t) => {
    await initBackend();
    const model = ClipModel.random(benchConfig('tiny'), 2);
    const split = splitPoint(model, parsePlan(spec, model.config, truncate));
    const pixels = tf.randomNormal([3, 3, 32, 32], 0, 1, 'float32', 9) as tf.Tensor4D;
    const prefix = await createOnnxPrefix(model, split);
    t.truthy(prefix);

    const expected = tf.tidy(() => runPrefix(model, split, pixels)).dataSync() as Float32Array;
    const actual = await prefix!.run(pixels.dataSync() as Float32Array, 3);
    t.is(actual.length, 3 * split.outputShape.reduce((a, b) => a * b, 1));
    let maxDiff = 0;
    for (let i = 0; i < expected.length; i++) maxDiff = Math.max(maxDiff, Math.abs(expected[i] - actual[i]));
    t.true(maxDiff < 1e-4, `max difference ${maxDiff}`);

    await prefix!.dispose();
    pixels.dispose();
    model.dispose();
  });
}

test('onnx prefix off for tfjs runtime', async (t) => {
  await initBackend();
  const model = ClipModel.random(benchConfig('tiny'), 2);
  const split = splitPoint(model, parsePlan('head', model.config));
  process.env.CLIPFREEZE_PREFIX_RUNTIME = 'tfjs';
  try {
    t.is(await createOnnxPrefix(model, split), null);
  } finally {
    delete process.env.CLIPFREEZE_PREFIX_RUNTIME;
    model.dispose();
  }
});
