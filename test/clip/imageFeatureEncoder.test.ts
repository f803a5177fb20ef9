// The image features of gradient-free passes (zero-shot, forgetting) on onnxruntime-node
// against encodeImage on TF.js, within 1e-4, and the CLIPFREEZE_PREFIX_RUNTIME switch. The
// ONNX tests skip with a message when onnxruntime-node is not installed.
import test from 'ava';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import { createImageFeatureEncoder } from '../../lib/clip/imageFeatureEncoder.ts';
import { ClipModel } from '../../lib/clip/model.ts';
import { RUNTIME_VARIABLE, requestedRuntime } from '../../lib/clip/onnxImageEncoder.ts';
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

// Serial: the tests set the runtime variable of this process.
const ortTest = hasOnnxRuntime() ? test.serial : test.serial.skip;
if (!hasOnnxRuntime()) console.log('onnxruntime-node is not installed: skipping the ONNX feature encoder tests.');

const TOLERANCE = 1e-4;

function maxDifference(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

/** Runs `body` with CLIPFREEZE_PREFIX_RUNTIME set to `value` (undefined: unset), then restores it. */
async function withRuntime<T>(value: string | undefined, body: () => Promise<T>): Promise<T> {
  const saved = process.env[RUNTIME_VARIABLE];
  if (value === undefined) delete process.env[RUNTIME_VARIABLE];
  else process.env[RUNTIME_VARIABLE] = value;
  try {
    return await body();
  } finally {
    if (saved === undefined) delete process.env[RUNTIME_VARIABLE];
    else process.env[RUNTIME_VARIABLE] = saved;
  }
}

async function encodeWith(runtime: string | undefined, model: ClipModel, pixels: Float32Array, batch: number, truncate: number) {
  return withRuntime(runtime, async () => {
    const encoder = await createImageFeatureEncoder(model, { truncate });
    const features = await encoder.encode(pixels, batch);
    await encoder.dispose();
    return { runtime: encoder.runtime, features };
  });
}

for (const truncate of [0, 1]) {
  ortTest(`feature encoder matches tfjs, truncate ${truncate}`, async (t) => {
    await initBackend();
    const config = benchConfig('tiny');
    const model = ClipModel.random(config, 11);
    const pixels = (await tf.randomNormal([3, 3, 32, 32], 0, 1, 'float32', 12).data()) as Float32Array;

    const onnx = await encodeWith(undefined, model, pixels, 3, truncate);
    const tfjs = await encodeWith('tfjs', model, pixels, 3, truncate);
    t.is(onnx.runtime, 'onnxruntime-node');
    t.is(tfjs.runtime, 'tfjs');
    t.is(onnx.features.length, 3 * config.embedDim);
    t.true(maxDifference(onnx.features, tfjs.features) < TOLERANCE, `max difference ${maxDifference(onnx.features, tfjs.features)}`);
    model.dispose();
  });
}

ortTest('feature encoder uses current weights', async (t) => {
  await initBackend();
  const config = benchConfig('tiny');
  const model = ClipModel.random(config, 13);
  const pixels = (await tf.randomNormal([2, 3, 32, 32], 0, 1, 'float32', 14).data()) as Float32Array;
  const before = await encodeWith('onnx', model, pixels, 2, 0);

  // Stand-in for fine-tuning: change the projection, as training would.
  const proj = model.getWeights().get('visual.proj')!;
  model.setWeights(new Map([['visual.proj', { shape: proj.shape, data: proj.data.map((v) => 2 * v) }]]));
  const after = await encodeWith('onnx', model, pixels, 2, 0);
  const reference = await encodeWith('tfjs', model, pixels, 2, 0);

  t.true(maxDifference(after.features, reference.features) < TOLERANCE, `max difference ${maxDifference(after.features, reference.features)}`);
  t.true(maxDifference(after.features, before.features) > 1e-3, 'features did not change with the weights');
  model.dispose();
});

test.serial('feature encoder rejects bad truncate', async (t) => {
  await initBackend();
  const model = ClipModel.random(benchConfig('tiny'), 15);
  await t.throwsAsync(() => createImageFeatureEncoder(model, { truncate: 5 }), { message: /Invalid truncate = 5: expected an integer from 0 to 4/ });
  model.dispose();
});

test.serial('runtime variable rejects unknown value', async (t) => {
  await withRuntime('gpu', async () => {
    t.throws(() => requestedRuntime(), { message: /Invalid CLIPFREEZE_PREFIX_RUNTIME 'gpu': expected auto, onnx or tfjs/ });
  });
});
