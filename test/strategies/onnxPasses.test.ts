// The gradient-free passes of the strategies on onnxruntime-node against TF.js: the similarity
// strategy's unit activations (within 1e-4 for every vision unit, over several batches) and the
// zero-shot task head. Skipped when onnxruntime-node is not installed.
import test from 'ava';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import { ClipModel } from '../../lib/clip/model.ts';
import { RUNTIME_VARIABLE } from '../../lib/clip/onnxImageEncoder.ts';
import { openDataset } from '../../lib/data/registry.ts';
import { collectUnitFeatures } from '../../lib/strategies/similarity.ts';
import { zeroShotHead } from '../../lib/strategies/target.ts';
import { initBackend } from '../../lib/util/backend.ts';
import { benchConfig } from '../../bench/shapes.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

function hasOnnxRuntime(): boolean {
  try {
    createRequire(import.meta.url).resolve('onnxruntime-node');
    return true;
  } catch {
    return false;
  }
}

const ortTest = hasOnnxRuntime() ? test.serial : test.serial.skip;
if (!hasOnnxRuntime()) console.log('onnxruntime-node is not installed: skipping the ONNX strategy tests.');

const TOLERANCE = 1e-4;

/** Runs `body` with CLIPFREEZE_PREFIX_RUNTIME set to `runtime`, then restores the variable. */
async function withRuntime<T>(runtime: string, body: () => Promise<T>): Promise<T> {
  const saved = process.env[RUNTIME_VARIABLE];
  process.env[RUNTIME_VARIABLE] = runtime;
  try {
    return await body();
  } finally {
    if (saved === undefined) delete process.env[RUNTIME_VARIABLE];
    else process.env[RUNTIME_VARIABLE] = saved;
  }
}

function collectWith(runtime: string, model: ClipModel, pixels: Float32Array, n: number) {
  return withRuntime(runtime, () => collectUnitFeatures(model, pixels, n, 2, runtime));
}

ortTest('unit features onnx match tfjs', async (t) => {
  await initBackend();
  const config = benchConfig('tiny');
  const model = ClipModel.random(config, 21);
  const n = 5;
  const pixels = (await tf.randomNormal([n, 3, 32, 32], 0, 1, 'float32', 22).data()) as Float32Array;

  const onnx = await collectWith('onnx', model, pixels, n);
  const tfjs = await collectWith('tfjs', model, pixels, n);

  const units = ['vision.embed', ...Array.from({ length: config.vision.layers }, (_, i) => `vision.block.${i}`), 'vision.head'];
  t.deepEqual([...onnx.keys()], units);
  t.deepEqual([...tfjs.keys()], units);
  for (const unit of units) {
    const a = onnx.get(unit)!;
    const b = tfjs.get(unit)!;
    t.deepEqual([a.n, a.d], [b.n, b.d], unit);
    let max = 0;
    for (let i = 0; i < a.data.length; i++) max = Math.max(max, Math.abs(a.data[i] - b.data[i]));
    t.true(max < TOLERANCE, `${unit}: max difference ${max}`);
  }
  t.is(onnx.get('vision.head')!.d, config.embedDim);
  model.dispose();
});

const sharedOrtTest = hasOnnxRuntime() && hasShared('fixtures', 'clip-mini') && hasShared('data', 'chestxray14-sample') ? test.serial : test.serial.skip;

sharedOrtTest('zero-shot head onnx matches tfjs', async (t) => {
  await initBackend();
  const { model, checkpoint } = await ClipModel.load(sharedPath('fixtures', 'clip-mini', 'hf-format'));
  const dataset = await openDataset('chestxray14', sharedPath('data', 'chestxray14-sample'), { limit: { train: 8, val: 8, test: 8 } });
  const onnx = await withRuntime('onnx', () => zeroShotHead(model, dataset, checkpoint.dir));
  const tfjs = await withRuntime('tfjs', () => zeroShotHead(model, dataset, checkpoint.dir));

  // W = logit scale * (pos - neg), so the tolerance applies to the features before the scale.
  const scale = model.logitScale().dataSync()[0];
  const a = onnx.weight.dataSync();
  const b = tfjs.weight.dataSync();
  t.is(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]) / scale);
  t.true(max < TOLERANCE, `max difference ${max} (divided by the logit scale)`);
  onnx.dispose();
  tfjs.dispose();
  model.dispose();
});
