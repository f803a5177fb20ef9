// Zero-shot evaluation and the forgetting measurement (prompts and images) on onnxruntime-node
// against the same passes on TF.js (CLIPFREEZE_PREFIX_RUNTIME=tfjs), on the clip-mini fixture
// with real images.
// Scores must agree within 1e-4. Skipped when onnxruntime-node is not installed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import test from 'ava';
import { ClipModel } from '../../lib/clip/model.ts';
import { RUNTIME_VARIABLE } from '../../lib/clip/onnxImageEncoder.ts';
import { preprocessConfigFrom } from '../../lib/clip/preprocess.ts';
import { ClipTokenizer } from '../../lib/clip/tokenizer.ts';
import { sourceZeroShotAccuracy } from '../../lib/eval/forgetting.ts';
import { readPredictions } from '../../lib/eval/predictions.ts';
import { runZeroShot } from '../../lib/eval/zeroShotRun.ts';
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

const ready = hasShared('fixtures', 'clip-mini') && hasShared('data', 'chestxray14-sample') && hasShared('data', 'natural', 'cifar10-test');
if (!hasOnnxRuntime()) console.log('onnxruntime-node is not installed: skipping the ONNX zero-shot and forgetting tests.');
// Serial: the tests set the runtime variable and patch ClipModel.prototype of this process.
const ortTest = ready && hasOnnxRuntime() ? test.serial : test.serial.skip;

const TOLERANCE = 1e-4;
const checkpoint = sharedPath('fixtures', 'clip-mini', 'hf-format');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-onnx-passes-'));

test.before(() => {
  process.env.CLIPFREEZE_CACHE_DIR = path.join(tmp, 'cache');
});

test.after.always(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Runs `body` with CLIPFREEZE_PREFIX_RUNTIME set to `value`, then restores the variable. */
async function withRuntime<T>(value: string, body: () => Promise<T>): Promise<T> {
  const saved = process.env[RUNTIME_VARIABLE];
  process.env[RUNTIME_VARIABLE] = value;
  try {
    return await body();
  } finally {
    if (saved === undefined) delete process.env[RUNTIME_VARIABLE];
    else process.env[RUNTIME_VARIABLE] = saved;
  }
}

/** Counts calls of ClipModel's TF.js image and text towers while `body` runs. */
async function countTfjsCalls<T>(body: () => Promise<T>): Promise<{ result: T; imageCalls: number; textCalls: number }> {
  const { encodeImage, encodeText } = ClipModel.prototype;
  const counts = { imageCalls: 0, textCalls: 0 };
  ClipModel.prototype.encodeImage = function (this: ClipModel, ...args: Parameters<ClipModel['encodeImage']>) {
    counts.imageCalls++;
    return encodeImage.apply(this, args);
  };
  ClipModel.prototype.encodeText = function (this: ClipModel, ...args: Parameters<ClipModel['encodeText']>) {
    counts.textCalls++;
    return encodeText.apply(this, args);
  };
  try {
    return { result: await body(), ...counts };
  } finally {
    Object.assign(ClipModel.prototype, { encodeImage, encodeText });
  }
}

ortTest('zero-shot onnx matches tfjs', async (t) => {
  await initBackend();
  const run = (runtime: string) =>
    withRuntime(runtime, () =>
      countTfjsCalls(() =>
        runZeroShot({ checkpoint, data: sharedPath('data', 'chestxray14-sample'), split: 'test', limit: 12, batchSize: 5, bootstrap: 0, runsDir: path.join(tmp, `runs-${runtime}`) }),
      ),
    );
  const { result: onnx, imageCalls, textCalls } = await run('onnx');
  const { result: tfjs } = await run('tfjs');

  // Neither tower runs on TF.js when onnxruntime-node is requested.
  t.is(imageCalls, 0);
  t.is(textCalls, 0);

  // The runtime is not part of the run id, and the log names the one used.
  t.is(onnx.runId, tfjs.runId);
  t.regex(fs.readFileSync(path.join(onnx.runDir, 'run.log'), 'utf8'), /image features on onnxruntime-node/);
  t.regex(fs.readFileSync(path.join(tfjs.runDir, 'run.log'), 'utf8'), /image features on tfjs/);

  const onnxRows = readPredictions(path.join(onnx.runDir, 'predictions.csv')).rows;
  const tfjsRows = readPredictions(path.join(tfjs.runDir, 'predictions.csv')).rows;
  t.is(onnxRows.length, 12);
  t.deepEqual(
    onnxRows.map((row) => row.image),
    tfjsRows.map((row) => row.image),
  );
  let maxDifference = 0;
  onnxRows.forEach((row, i) => row.scores.forEach((score, f) => (maxDifference = Math.max(maxDifference, Math.abs(score - tfjsRows[i].scores[f])))));
  t.true(maxDifference < TOLERANCE, `max score difference ${maxDifference}`);
});

for (const truncate of [0, 1]) {
  ortTest(`forgetting onnx matches tfjs, truncate ${truncate}`, async (t) => {
    await initBackend();
    const { model, checkpoint: loaded } = await ClipModel.load(checkpoint);
    const measure = (runtime: string) =>
      withRuntime(runtime, () =>
        countTfjsCalls(() =>
          sourceZeroShotAccuracy({
            imageModel: model,
            textModel: model,
            tokenizer: ClipTokenizer.fromDir(loaded.dir),
            set: sharedPath('data', 'natural', 'cifar10-test'),
            preprocess: preprocessConfigFrom(model.config),
            limitPerClass: 2,
            batchSize: 8,
            truncate,
          }),
        ),
      );
    const onnx = await measure('onnx');
    const tfjs = await measure('tfjs');

    // The ONNX pass never calls the TF.js towers, and both pick the same classes.
    t.is(onnx.imageCalls, 0);
    t.is(onnx.textCalls, 0);
    t.is(tfjs.imageCalls, 3);
    t.true(tfjs.textCalls > 0);
    t.is(onnx.result.n, 20);
    t.is(onnx.result.correct, tfjs.result.correct);
    model.dispose();
  });
}
