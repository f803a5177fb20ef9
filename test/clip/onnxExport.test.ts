// The exported ONNX image tower, run by onnxruntime-node, against the TF.js model (which the
// model tests check against the PyTorch reference). onnxruntime-node is optional: without it
// these tests are skipped with a message.
import test from 'ava';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import { ClipModel } from '../../lib/clip/model.ts';
import { createOnnxImageEncoder } from '../../lib/clip/onnxImageEncoder.ts';
import { exportVisionOnnx } from '../../lib/clip/onnxExport.ts';
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

const ortTest = hasOnnxRuntime() ? test : test.skip;
if (!hasOnnxRuntime()) console.log('onnxruntime-node is not installed: skipping the ONNX export tests.');

function maxDifference(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

ortTest('onnx features match tfjs', async (t) => {
  await initBackend();
  const config = benchConfig('tiny');
  const model = ClipModel.random(config, 3);
  const pixels = tf.randomNormal([3, 3, 32, 32], 0, 1, 'float32', 5) as tf.Tensor4D;
  const encoder = await createOnnxImageEncoder(model, { threads: 1 });

  const expected = model.encodeImage(pixels).dataSync() as Float32Array;
  const actual = await encoder.encode(pixels.dataSync() as Float32Array, 3);
  t.is(actual.length, 3 * config.embedDim);
  t.true(maxDifference(expected, actual) < 1e-4, `max difference ${maxDifference(expected, actual)}`);

  await encoder.dispose();
  pixels.dispose();
  model.dispose();
});

ortTest('onnx prefix tokens match tfjs', async (t) => {
  await initBackend();
  const config = benchConfig('tiny');
  const model = ClipModel.random(config, 4);
  const pixels = tf.randomNormal([2, 3, 32, 32], 0, 1, 'float32', 6) as tf.Tensor4D;
  const encoder = await createOnnxImageEncoder(model, { blocks: 2, output: 'tokens', threads: 1 });

  const expected = tf.tidy(() => model.visionBlock(1, model.visionBlock(0, model.visionEmbed(pixels))).dataSync() as Float32Array);
  const actual = await encoder.encode(pixels.dataSync() as Float32Array, 2);
  t.deepEqual(encoder.outputShape, [17, 64]);
  t.is(actual.length, expected.length);
  t.true(maxDifference(expected, actual) < 1e-4, `max difference ${maxDifference(expected, actual)}`);

  await encoder.dispose();
  pixels.dispose();
  model.dispose();
});

ortTest('onnx unit outputs match tfjs', async (t) => {
  await initBackend();
  const config = benchConfig('tiny');
  const model = ClipModel.random(config, 7);
  const pixels = tf.randomNormal([3, 3, 32, 32], 0, 1, 'float32', 8) as tf.Tensor4D;
  const encoder = await createOnnxImageEncoder(model, { output: 'units', threads: 1 });
  const actual = await encoder.encodeAll(pixels.dataSync() as Float32Array, 3);

  // TF.js reference: mean patch token after ln_pre, class token after each block, features.
  const expected = new Map<string, Float32Array>();
  tf.tidy(() => {
    let x = model.visionEmbed(pixels);
    expected.set('vision.embed', x.slice([0, 1, 0], [-1, -1, -1]).mean(1).dataSync() as Float32Array);
    for (let i = 0; i < config.vision.layers; i++) {
      x = model.visionBlock(i, x);
      expected.set(`vision.block.${i}`, x.slice([0, 0, 0], [-1, 1, -1]).dataSync() as Float32Array);
    }
    expected.set('vision.head', model.visionHead(x).dataSync() as Float32Array);
  });

  t.deepEqual([...actual.keys()], [...expected.keys()]);
  for (const [unit, values] of expected) {
    t.is(actual.get(unit)!.length, values.length, unit);
    t.true(maxDifference(values, actual.get(unit)!) < 1e-4, `${unit}: max difference ${maxDifference(values, actual.get(unit)!)}`);
  }

  await encoder.dispose();
  pixels.dispose();
  model.dispose();
});

ortTest('onnx truncated features match tfjs', async (t) => {
  await initBackend();
  const config = benchConfig('tiny');
  const model = ClipModel.random(config, 9);
  const pixels = tf.randomNormal([2, 3, 32, 32], 0, 1, 'float32', 10) as tf.Tensor4D;
  const encoder = await createOnnxImageEncoder(model, { blocks: config.vision.layers - 2, threads: 1 });

  const expected = tf.tidy(() => model.encodeImage(pixels, { truncate: 2 }).dataSync() as Float32Array);
  const actual = await encoder.encode(pixels.dataSync() as Float32Array, 2);
  t.is(actual.length, expected.length);
  t.true(maxDifference(expected, actual) < 1e-4, `max difference ${maxDifference(expected, actual)}`);

  await encoder.dispose();
  pixels.dispose();
  model.dispose();
});

test('onnx export rejects bad block count', (t) => {
  const config = benchConfig('tiny');
  t.throws(() => exportVisionOnnx(config, new Map(), { blocks: 5 }), { message: /block count 5: the model has 4 vision blocks/ });
});

test('onnx export names missing weight', (t) => {
  const config = benchConfig('tiny');
  t.throws(() => exportVisionOnnx(config, new Map()), { message: /weight 'visual.conv1.weight' is missing/ });
});
