import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadCheckpoint } from '../../lib/clip/checkpoint.ts';
import { ClipModel } from '../../lib/clip/model.ts';
import { parsePlan } from '../../lib/freeze/plan.ts';
import { layerUnits } from '../../lib/freeze/units.ts';
import { TaskHead } from '../../lib/train/head.ts';
import { runPrefix, runSuffix, splitPoint } from '../../lib/train/imagePath.ts';
import { trainRun } from '../../lib/train/trainer.ts';
import { initBackend } from '../../lib/util/backend.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

const sharedTest = hasShared('fixtures', 'clip-mini') && hasShared('data', 'chestxray14-sample') ? test.serial : test.serial.skip;
const checkpoint = sharedPath('fixtures', 'clip-mini', 'hf-format');
const data = sharedPath('data', 'chestxray14-sample');

test.before(async () => {
  await initBackend();
});

function tempRuns(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'trainer-test-'));
}

function baseConfig(runs: string, extra: Record<string, unknown> = {}) {
  return {
    checkpoint,
    data,
    runs,
    epochs: 2,
    batchSize: 8,
    microBatchSize: 4,
    lr: 1e-3,
    warmupSteps: 1,
    bootstrap: 0,
    limit: { train: 16, val: 8, test: 8 },
    ...extra,
  };
}

sharedTest('trainer changes only trained units', async (t) => {
  const runs = tempRuns();
  const original = loadCheckpoint(checkpoint).weights;
  let after: Map<string, { data: Float32Array }> | null = null;
  let completeDuringRun = false;
  const result = await trainRun(baseConfig(runs, { trainUnits: 'vision.block.1,vision.head,head' }), {
    hooks: {
      afterStep: () => {
        completeDuringRun ||= fs.readdirSync(runs).some((d) => fs.existsSync(path.join(runs, d, 'complete.json')));
      },
      beforeDispose: ({ model }) => {
        after = model.getWeights();
      },
    },
  });
  t.false(completeDuringRun, 'complete.json existed before the run finished');
  t.true(fs.existsSync(path.join(result.runDir, 'complete.json')));

  const trained = new Set(['vision.block.1', 'vision.head']);
  for (const unit of layerUnits(loadCheckpoint(checkpoint).config)) {
    if (unit.name === 'head') continue;
    for (const p of unit.params) {
      const before = original.get(p.name)!.data;
      const now = after!.get(p.name)!.data;
      const identical = Buffer.compare(Buffer.from(before.buffer, before.byteOffset, before.byteLength), Buffer.from(now.buffer, now.byteOffset, now.byteLength)) === 0;
      if (trained.has(unit.name) && !p.name.endsWith('.bias')) t.false(identical, `${p.name} of trained unit ${unit.name} did not change`);
      if (!trained.has(unit.name)) t.true(identical, `${p.name} of frozen unit ${unit.name} changed`);
    }
  }
  fs.rmSync(runs, { recursive: true });
});

sharedTest('trainer lowers loss on fixed batch', async (t) => {
  const runs = tempRuns();
  const result = await trainRun(
    baseConfig(runs, { trainUnits: 'vision.block.2,vision.head,head', epochs: 4, patience: 0, limit: { train: 8, val: 8, test: 8 }, lr: 3e-4 }),
  );
  const history = JSON.parse(fs.readFileSync(path.join(result.runDir, 'history.json'), 'utf8')) as { epochs: Array<{ trainLoss: number }> };
  t.is(history.epochs.length, 4);
  t.true(history.epochs[3].trainLoss < history.epochs[0].trainLoss, JSON.stringify(history.epochs.map((e) => e.trainLoss)));
  fs.rmSync(runs, { recursive: true });
});

sharedTest('trainer records cost and skips rerun', async (t) => {
  const runs = tempRuns();
  const result = await trainRun(baseConfig(runs, { trainUnits: 'head', epochs: 1, method: 'linear-probe' }));
  for (const file of ['config.json', 'environment.json', 'dataset.json', 'history.json', 'cost.json', 'metrics.json', 'predictions.csv', 'complete.json']) {
    t.true(fs.existsSync(path.join(result.runDir, file)), file);
  }
  // The sample has the split lists of the full dataset: 112,120 listed, 621 present.
  const dataset = JSON.parse(fs.readFileSync(path.join(result.runDir, 'dataset.json'), 'utf8')) as { missing: number; skipped: { missing: number } };
  t.is(dataset.missing, 112_120 - 621);
  t.is(dataset.skipped.missing, 112_120 - 621);
  t.is(result.cost.trainableParams, 32 * 14 + 14);
  t.is(result.cost.imagesSeen, 16);
  t.true(result.cost.flops > 0);
  t.true(result.cost.peakTensorBytes > 0);
  t.true(result.cost.peakRssBytes > 0);
  t.is(result.cost.backend, 'wasm');
  t.true(result.cost.wasmHeapBytes! > 0 && result.cost.wasmHeapBytes! <= 2 ** 32);
  const config = JSON.parse(fs.readFileSync(path.join(result.runDir, 'config.json'), 'utf8'));
  t.is(config.kind, 'train');
  t.is(config.method, 'linear-probe');
  t.regex(config.checkpointSha256, /^[0-9a-f]{64}$/);
  t.true(path.basename(result.runDir).startsWith('train-linear-probe-'));

  // The same config maps to the same complete record, which is returned without training.
  const metricsFile = path.join(result.runDir, 'metrics.json');
  const mtime = fs.statSync(metricsFile).mtimeMs;
  const again = await trainRun(baseConfig(runs, { trainUnits: 'head', epochs: 1, method: 'linear-probe' }));
  t.is(again.runDir, result.runDir);
  t.is(fs.statSync(metricsFile).mtimeMs, mtime);
  t.deepEqual(again.metrics, result.metrics);
  fs.rmSync(runs, { recursive: true });
});

sharedTest('head init reproduces zero-shot', async (t) => {
  const runs = tempRuns();
  // One step at learning rate ~0 leaves the zero-shot head as it was.
  const result = await trainRun(baseConfig(runs, { trainUnits: 'head', epochs: 1, maxSteps: 1, lr: 1e-30, warmupSteps: 0 }));
  const { model } = await ClipModel.load(checkpoint);
  const { buildZeroShotClassifier, loadPrompts, zeroShotScores } = await import('../../lib/eval/zeroShot.ts');
  const { ClipTokenizer } = await import('../../lib/clip/tokenizer.ts');
  const { openDataset } = await import('../../lib/data/registry.ts');
  const { loadBatch } = await import('../../lib/data/batches.ts');
  const { preprocessConfigFrom } = await import('../../lib/clip/preprocess.ts');
  const { readPredictions } = await import('../../lib/eval/predictions.ts');
  const dataset = await openDataset('chestxray14', data, { limit: { train: 16, val: 8, test: 8 } });
  const classifier = buildZeroShotClassifier(model, ClipTokenizer.fromDir(checkpoint), loadPrompts(dataset.promptsFile, dataset.findings), dataset.findings);
  const batch = await loadBatch(dataset, dataset.samples('test'), preprocessConfigFrom(model.config));
  const features = tf.tidy(() => model.encodeImage(batch.pixels));
  const expected = zeroShotScores(classifier, features.dataSync() as Float32Array, batch.kept.length);
  const predictions = readPredictions(path.join(result.runDir, 'predictions.csv'));
  const byImage = new Map(predictions.rows.map((r) => [r.image, r.scores]));
  let maxError = 0;
  batch.kept.forEach((sample, i) => {
    const scores = byImage.get(sample.id)!;
    for (let f = 0; f < 14; f++) maxError = Math.max(maxError, Math.abs(scores[f] - expected[i * 14 + f]));
  });
  t.true(maxError < 1e-4, `max difference ${maxError}`);
  features.dispose();
  model.dispose();
  fs.rmSync(runs, { recursive: true });
});

sharedTest('truncation gives expected shapes', async (t) => {
  const { model } = await ClipModel.load(checkpoint);
  const head = TaskHead.random(32, 14, 0);
  const pixels = tf.randomNormal([2, 3, 224, 224], 0, 1, 'float32', 1) as tf.Tensor4D;
  for (const truncate of [0, 1, 2]) {
    const blockPlan = parsePlan(`vision.block.0,head`, model.config, truncate);
    const blockSplit = splitPoint(model, blockPlan);
    const tokens = runPrefix(model, blockSplit, pixels);
    t.deepEqual(tokens.shape, [2, 50, 128]);
    t.deepEqual(blockSplit.units.filter((u) => u.startsWith('vision.block.')).length, 3 - truncate);

    const headSplit = splitPoint(model, parsePlan('head', model.config, truncate));
    const features = runPrefix(model, headSplit, pixels);
    t.deepEqual(features.shape, [2, 32]);
    const expected = model.encodeImage(pixels, { truncate });
    const difference = tf.tidy(() => tf.max(tf.abs(tf.sub(features, expected))).dataSync()[0]);
    t.true(difference < 1e-5, `truncate ${truncate}: prefix features differ from encodeImage by ${difference}`);

    const viaBlocks = runSuffix(model, head, blockSplit, tokens);
    const viaHead = runSuffix(model, head, headSplit, features);
    t.deepEqual(viaBlocks.shape, [2, 14]);
    const logitDifference = tf.tidy(() => tf.max(tf.abs(tf.sub(viaBlocks, viaHead))).dataSync()[0]);
    t.true(logitDifference < 1e-4, `truncate ${truncate}: split paths disagree by ${logitDifference}`);

    const visionHeadSplit = splitPoint(model, parsePlan('vision.head,head', model.config, truncate));
    t.deepEqual(visionHeadSplit.outputShape, [1, 128]);
    tf.dispose([tokens, features, expected, viaBlocks, viaHead]);
  }
  head.dispose();
  pixels.dispose();
  model.dispose();
});
