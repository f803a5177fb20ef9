// The exported ONNX text tower, run by onnxruntime-node, against encodeText on TF.js within
// 1e-4, with batches cut to their longest prompt. Skipped when onnxruntime-node is not installed.
import test from 'ava';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import { ClipModel } from '../../lib/clip/model.ts';
import { createOnnxTextEncoder } from '../../lib/clip/onnxTextEncoder.ts';
import { ClipTokenizer } from '../../lib/clip/tokenizer.ts';
import { initBackend } from '../../lib/util/backend.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

function hasOnnxRuntime(): boolean {
  try {
    createRequire(import.meta.url).resolve('onnxruntime-node');
    return true;
  } catch {
    return false;
  }
}

const ortTest = hasOnnxRuntime() && hasShared('fixtures', 'clip-mini') ? test : test.skip;
if (!hasOnnxRuntime()) console.log('onnxruntime-node is not installed: skipping the ONNX text encoder tests.');

const TOLERANCE = 1e-4;

function maxDifference(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

const PROMPTS = [
  'a chest x-ray showing effusion',
  'a chest x-ray with no pleural thickening',
  'x-ray',
  'a frontal chest radiograph of a patient with a large right-sided pneumothorax and a chest tube in place',
];

ortTest('onnx text features match tfjs', async (t) => {
  await initBackend();
  const { model, checkpoint } = await ClipModel.load(sharedPath('fixtures', 'clip-mini', 'hf-format'));
  const { contextLength } = model.config.text;
  const ids = ClipTokenizer.fromDir(checkpoint.dir).tokenize(PROMPTS, contextLength);
  const encoder = await createOnnxTextEncoder(model, { threads: 1 });

  const expected = tf.tidy(() => model.encodeText(tf.tensor2d(ids, [PROMPTS.length, contextLength], 'int32')).dataSync() as Float32Array);
  const actual = await encoder.encode(ids, PROMPTS.length);
  t.is(actual.length, expected.length);
  t.true(maxDifference(expected, actual) < TOLERANCE, `max difference ${maxDifference(expected, actual)}`);

  // A batch of one short prompt is cut to a few tokens and still matches its row.
  const short = await encoder.encode(ids.subarray(2 * contextLength, 3 * contextLength), 1);
  const embedDim = model.config.embedDim;
  const row = expected.subarray(2 * embedDim, 3 * embedDim);
  t.true(maxDifference(row, short) < TOLERANCE, `max difference ${maxDifference(row, short)}`);

  await encoder.dispose();
  model.dispose();
});

ortTest('onnx text encoder rejects bad buffer', async (t) => {
  await initBackend();
  const { model } = await ClipModel.load(sharedPath('fixtures', 'clip-mini', 'hf-format'));
  const encoder = await createOnnxTextEncoder(model, { threads: 1 });
  await t.throwsAsync(() => encoder.encode(new Int32Array(10), 1), { message: /Invalid token id buffer: 10 values, expected 1 rows of 77/ });
  await encoder.dispose();
  model.dispose();
});
