import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { presetConfig, type ClipConfig } from '../../lib/clip/config.ts';
import { ClipModel } from '../../lib/clip/model.ts';
import { parsePlan } from '../../lib/freeze/plan.ts';
import { HEAD_PARAMS } from '../../lib/freeze/units.ts';
import { GradientBuffer } from '../../lib/train/gradientBuffer.ts';
import { chooseTrainThreads, GradientWorkers, MIN_PARALLEL_RUN_FLOPS } from '../../lib/train/gradientWorkers.ts';
import { TaskHead } from '../../lib/train/head.ts';
import { splitPoint } from '../../lib/train/imagePath.ts';
import { batchGradients, type MicroBatchLoader } from '../../lib/train/microBatch.ts';
import { markFrozenVariables } from '../../lib/train/frozenVariables.ts';
import { initBackend } from '../../lib/util/backend.ts';

const FINDINGS = 3;

function tinyConfig(): ClipConfig {
  const config = presetConfig('ViT-B/32');
  config.embedDim = 16;
  config.vision = { imageSize: 16, patchSize: 8, width: 32, layers: 3, heads: 2, mlpDim: 64 };
  config.text = { contextLength: 77, vocabSize: 1000, width: 16, layers: 1, heads: 2, mlpDim: 32 };
  return config;
}

test.before(async () => {
  await initBackend();
});

// Three micro-batches of 2 images: the prefix output before block 1 ([2, 5, 32]) and labels.
function loaders(seed: number): MicroBatchLoader[] {
  return [0, 1, 2].map((i) => async () => ({
    x: tf.randomNormal([2, 5, 32], 0, 1, 'float32', seed + 1 + i), // seed 0 would mean unseeded
    labels: tf.tidy(() => tf.cast(tf.greater(tf.randomUniform([2, FINDINGS], 0, 1, 'float32', seed + 10 + i), 0.5), 'float32')) as tf.Tensor2D,
  }));
}

function setup() {
  const model = ClipModel.random(tinyConfig(), 0);
  const plan = parsePlan('vision.block.1,vision.head,head', model.config);
  const head = TaskHead.random(model.config.embedDim, FINDINGS, 1);
  const params = [...plan.train.filter((u) => u !== 'head')]
    .flatMap((unit) => [...model.params].filter(([name]) => ownsParam(unit, name)))
    .map(([name, variable]) => ({ name, variable }));
  for (const [name, variable] of head.variables()) params.push({ name, variable });
  const restore = markFrozenVariables(model, plan);
  return { model, head, split: splitPoint(model, plan), params, restore };
}

function ownsParam(unit: string, name: string): boolean {
  if (unit === 'vision.head') return name === 'visual.ln_post.weight' || name === 'visual.ln_post.bias' || name === 'visual.proj';
  return name.startsWith(`visual.transformer.resblocks.${unit.slice('vision.block.'.length)}.`);
}

function maxRelativeDifference(a: GradientBuffer, b: GradientBuffer): number {
  let worst = 0;
  for (const [name, values] of a.entries()) {
    const other = b.entries().get(name)!;
    let scale = 1e-12;
    for (const v of values) scale = Math.max(scale, Math.abs(v));
    for (let i = 0; i < values.length; i++) worst = Math.max(worst, Math.abs(values[i] - other[i]) / scale);
  }
  return worst;
}

test.serial('workers match one thread', async (t) => {
  const { model, head, split, params, restore } = setup();
  const single = new GradientBuffer();
  const singleLosses = await batchGradients(loaders(0), 6, { model, head, split, params, workers: null }, single);

  const workers = await GradientWorkers.start(2, { model, head, split, params, backend: 'wasm' });
  try {
    const parallel = new GradientBuffer();
    const parallelLosses = await batchGradients(loaders(0), 6, { model, head, split, params, workers }, parallel);
    t.is(parallel.size, single.size);
    t.true(parallel.entries().has(HEAD_PARAMS.weight));
    t.true(maxRelativeDifference(parallel, single) < 1e-5, `relative difference ${maxRelativeDifference(parallel, single)}`);
    const sortedLosses = (losses: Array<{ loss: number }>) => losses.map((l) => l.loss).sort();
    sortedLosses(parallelLosses).forEach((loss, i) => t.true(Math.abs(loss - sortedLosses(singleLosses)[i]) < 1e-5));
  } finally {
    await workers.close();
    restore();
  }
});

test.serial('synced weights reach workers', async (t) => {
  const { model, head, split, params, restore } = setup();
  const workers = await GradientWorkers.start(1, { model, head, split, params, backend: 'wasm' });
  try {
    // Change every trained weight on the main thread, as an optimiser update would.
    for (const p of params) tf.tidy(() => p.variable.assign(tf.add(p.variable, tf.randomNormal(p.variable.shape, 0, 0.1, 'float32', 7))));
    workers.syncWeights(params);

    const single = new GradientBuffer();
    await batchGradients(loaders(20), 6, { model, head, split, params, workers: null }, single);
    const parallel = new GradientBuffer();
    await batchGradients(loaders(20), 6, { model, head, split, params, workers }, parallel);
    t.true(maxRelativeDifference(parallel, single) < 1e-5, `relative difference ${maxRelativeDifference(parallel, single)}`);
  } finally {
    await workers.close();
    restore();
  }
});

test.serial('worker error names the worker', async (t) => {
  const { model, head, split, params, restore } = setup();
  const workers = await GradientWorkers.start(1, { model, head, split, params, backend: 'wasm' });
  try {
    // Tokens of the wrong width cannot pass block 1.
    workers.submit(0, { x: tf.zeros([2, 5, 7]), labels: tf.zeros([2, FINDINGS]) as tf.Tensor2D }, 2);
    const error = await t.throwsAsync(() => workers.collect(new GradientBuffer()));
    t.regex(error!.message, /Gradient worker 1 failed/);
    // The worker stays usable for the next step.
    const grads = new GradientBuffer();
    await batchGradients(loaders(0).slice(0, 1), 2, { model, head, split, params, workers }, grads);
    t.is(grads.size, params.length);
  } finally {
    await workers.close();
    restore();
  }
});

const context = { backend: 'wasm', cores: 2, microBatchesPerStep: 8, runFlops: 10 * MIN_PARALLEL_RUN_FLOPS };

test('auto threads use both cores on wasm', (t) => {
  t.is(chooseTrainThreads('auto', context).threads, 2);
});

test('auto threads stay one on native backend', (t) => {
  t.is(chooseTrainThreads('auto', { ...context, backend: 'node' }).threads, 1);
});

test('auto threads stay one for short runs', (t) => {
  const choice = chooseTrainThreads('auto', { ...context, runFlops: MIN_PARALLEL_RUN_FLOPS / 2 });
  t.is(choice.threads, 1);
  t.regex(choice.reason, /GFLOP/);
});

test('explicit threads capped by micro-batches', (t) => {
  t.is(chooseTrainThreads(6, { ...context, microBatchesPerStep: 3 }).threads, 3);
});
