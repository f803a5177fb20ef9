// Unit activations of the similarity strategy on onnxruntime-node against TF.js, within 1e-4
// for every vision unit, over several batches. Skipped when onnxruntime-node is not installed.
import test from 'ava';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import { ClipModel } from '../../lib/clip/model.ts';
import { RUNTIME_VARIABLE } from '../../lib/clip/onnxImageEncoder.ts';
import { collectUnitFeatures } from '../../lib/strategies/similarity.ts';
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

const ortTest = hasOnnxRuntime() ? test.serial : test.serial.skip;
if (!hasOnnxRuntime()) console.log('onnxruntime-node is not installed: skipping the ONNX unit activation tests.');

const TOLERANCE = 1e-4;

async function collectWith(runtime: string, model: ClipModel, pixels: Float32Array, n: number) {
  const saved = process.env[RUNTIME_VARIABLE];
  process.env[RUNTIME_VARIABLE] = runtime;
  try {
    return await collectUnitFeatures(model, pixels, n, 2, runtime);
  } finally {
    if (saved === undefined) delete process.env[RUNTIME_VARIABLE];
    else process.env[RUNTIME_VARIABLE] = saved;
  }
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
