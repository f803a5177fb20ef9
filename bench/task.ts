// One clipfreeze benchmark task per process, so that peak RSS and the wasm heap size belong to
// that task alone. bench/run.ts spawns it; it prints one JSON object on stdout.
//
//   npx tsx bench/task.ts --task forward --batch 8 [--repeats 3] [--model tiny] [--runtime tfjs|onnx]
//   npx tsx bench/task.ts --task train --plan frozen8 [--batch-size 32] [--micro-batch-size 4] [--steps 1] [--threads auto|N]
//   npx tsx bench/task.ts --task sweep --cache on|off [--images 32] [--epochs 2]
//
// Weights, pixels and labels are random. The training step is the trainer's own: the frozen
// prefix outside the gradient tape (runPrefix), gradient accumulation over micro-batches
// on the main thread and worker threads (batchGradients), clipping by global norm and AdamW.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { ClipModel } from '../lib/clip/model.ts';
import { createOnnxImageEncoder } from '../lib/clip/onnxImageEncoder.ts';
import { parsePlan, type FreezePlan } from '../lib/freeze/plan.ts';
import { ActivationCache } from '../lib/train/activationCache.ts';
import { AdamW } from '../lib/train/adamw.ts';
import { parseTrainConfig } from '../lib/train/config.ts';
import { peakRssBytes, wasmHeapBytes } from '../lib/train/cost.ts';
import { markFrozenVariables } from '../lib/train/frozenVariables.ts';
import { createOnnxPrefix, type OnnxPrefix } from '../lib/train/onnxPrefix.ts';
import { GradientBuffer } from '../lib/train/gradientBuffer.ts';
import { TaskHead } from '../lib/train/head.ts';
import { runPrefix, splitPoint, type SplitPoint } from '../lib/train/imagePath.ts';
import { batchGradients } from '../lib/train/microBatch.ts';
import { availableCores, chooseTrainThreads, GradientWorkers } from '../lib/train/gradientWorkers.ts';
import { trainableParams } from '../lib/train/trainer.ts';
import { initBackend } from '../lib/util/backend.ts';
import { benchConfig, firstTrainedBlock, planSpec, type BenchModel, type BenchPlan } from './shapes.ts';

const FINDINGS = 14;

function option(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 && index + 1 < process.argv.length ? process.argv[index + 1] : fallback;
}

function intOption(name: string, fallback: number): number {
  const raw = option(name, String(fallback));
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error(`Invalid --${name} ${raw}: expected a positive integer.`);
  return value;
}

const task = option('task', '');
const modelName = option('model', 'ViT-B/32') as BenchModel;
if (modelName !== 'ViT-B/32' && modelName !== 'tiny') throw new Error(`Invalid --model ${modelName}: expected ViT-B/32 or tiny.`);

const backend = await initBackend();
const config = benchConfig(modelName);
const size = config.vision.imageSize;
const model = ClipModel.random(config, 0);
// The PyTorch peer builds only the image tower, so the text tower's weights are released to
// compare memory like with like. The benchmark never calls the text tower.
for (const [name, variable] of model.params) {
  if (!name.startsWith('visual.')) {
    variable.dispose();
    model.params.delete(name);
  }
}

let peakTensorBytes = tf.memory().numBytes;
const sampleMemory = (): void => {
  peakTensorBytes = Math.max(peakTensorBytes, tf.memory().numBytes);
};

/** Returns deterministic random pixels [B, 3, size, size] for images first .. first+B-1. */
function pixelsFor(first: number, count: number): tf.Tensor4D {
  return tf.tidy(() => tf.concat(Array.from({ length: count }, (_, i) => tf.randomNormal([1, 3, size, size], 0, 1, 'float32', first + i))) as tf.Tensor4D);
}

function labelsFor(first: number, count: number): tf.Tensor2D {
  return tf.tidy(() => tf.cast(tf.greater(tf.randomUniform([count, FINDINGS], 0, 1, 'float32', 10_000 + first), 0.8), 'float32') as tf.Tensor2D);
}

/** Times `repeats` forward passes of the image tower at batch `batch`, after one warm-up pass. */
function forward(batch: number, repeats: number): Record<string, number> {
  const pixels = pixelsFor(0, batch);
  const pass = (): void => {
    const features = tf.tidy(() => model.encodeImage(pixels, { onBlock: sampleMemory }));
    features.dataSync();
    features.dispose();
  };
  pass();
  const started = performance.now();
  for (let i = 0; i < repeats; i++) pass();
  const seconds = (performance.now() - started) / 1000 / repeats;
  pixels.dispose();
  return { msPerImage: (1000 * seconds) / batch, imagesPerSecond: batch / seconds };
}

/** Like `forward`, with the image tower exported to ONNX and run by onnxruntime-node on 2 threads. */
async function forwardOnnx(batch: number, repeats: number): Promise<Record<string, number>> {
  const encoder = await createOnnxImageEncoder(model, { threads: 2 });
  const pixels = pixelsFor(0, batch);
  const values = pixels.dataSync() as Float32Array;
  pixels.dispose();
  await encoder.encode(values, batch);
  const started = performance.now();
  for (let i = 0; i < repeats; i++) await encoder.encode(values, batch);
  const seconds = (performance.now() - started) / 1000 / repeats;
  await encoder.dispose();
  return { msPerImage: (1000 * seconds) / batch, imagesPerSecond: batch / seconds };
}

interface Trainer {
  plan: FreezePlan;
  split: SplitPoint;
  head: TaskHead;
  optimizer: AdamW;
  params: ReturnType<typeof trainableParams>;
  /** Worker threads of a data-parallel step, as the trainer starts them; null for one thread. */
  workers: GradientWorkers | null;
  threads: number;
  restore: () => void;
}

/** --threads: a count, or auto (the trainer's choice for a long run). */
function threadsFor(batchSize: number, microBatchSize: number): number {
  const setting = option('threads', 'auto');
  const requested = setting === 'auto' ? 'auto' : intOption('threads', 1);
  const context = { backend: backend.name, cores: availableCores(), microBatchesPerStep: Math.ceil(batchSize / microBatchSize), runFlops: Infinity };
  return chooseTrainThreads(requested, context).threads;
}

async function makeTrainer(spec: string, batchSize: number, microBatchSize: number): Promise<Trainer> {
  const plan = parsePlan(spec, config);
  const trainConfig = parseTrainConfig({ checkpoint: '(random)', data: '(random)', batchSize, microBatchSize });
  const head = TaskHead.random(config.embedDim, FINDINGS, 0);
  const params = trainableParams(model, head, plan, trainConfig);
  const optimizer = new AdamW(params, { weightDecay: trainConfig.weightDecay, beta1: trainConfig.beta1, beta2: trainConfig.beta2, eps: trainConfig.eps });
  const restore = markFrozenVariables(model, plan);
  const split = splitPoint(model, plan);
  const threads = threadsFor(batchSize, microBatchSize);
  const workers = threads > 1 ? await GradientWorkers.start(threads - 1, { model, head, split, params, backend: backend.name }) : null;
  return { plan, split, head, optimizer, params, workers, threads, restore };
}

async function disposeTrainer(trainer: Trainer): Promise<void> {
  await trainer.workers?.close();
  trainer.restore();
  trainer.optimizer.dispose();
  trainer.head.dispose();
}

/**
 * Runs one optimiser step over images first .. first+batchSize-1 in micro-batches. `prefix`
 * returns the frozen prefix's output for a micro-batch (computed, or read from a cache).
 */
type Prefix = (first: number, count: number) => Promise<tf.Tensor>;

async function optimiserStep(trainer: Trainer, first: number, batchSize: number, microBatchSize: number, prefix: Prefix): Promise<number> {
  const grads = new GradientBuffer();
  const loaders = [];
  for (let start = first; start < first + batchSize; start += microBatchSize) {
    const count = Math.min(microBatchSize, first + batchSize - start);
    loaders.push(async () => ({ x: await prefix(start, count), labels: labelsFor(start, count) }));
  }
  const context = { model, head: trainer.head, split: trainer.split, params: trainer.params, workers: trainer.workers, afterForward: sampleMemory };
  const losses = await batchGradients(loaders, batchSize, context, grads);
  grads.clipByGlobalNorm(1);
  trainer.optimizer.applyGradients(grads.entries(), 1e-5);
  trainer.workers?.syncWeights(trainer.params);
  sampleMemory();
  return losses.reduce((sum, { loss, images }) => sum + (loss * images) / batchSize, 0);
}

/**
 * Returns the trainer's way of computing the frozen prefix: onnxruntime-node when installed
 * (unless CLIPFREEZE_PREFIX_RUNTIME=tfjs), otherwise runPrefix on TF.js.
 */
function computePrefix(split: SplitPoint, onnx: OnnxPrefix | null): Prefix {
  return async (first, count) => {
    const pixels = pixelsFor(first, count);
    if (onnx) {
      const values = await onnx.run(pixels.dataSync() as Float32Array, count);
      pixels.dispose();
      return tf.tensor(values, [count, ...split.outputShape]);
    }
    const x = runPrefix(model, split, pixels);
    pixels.dispose();
    return x;
  };
}

/**
 * Times `steps` optimiser steps of a benchmark plan, after one untimed warm-up step with one
 * micro-batch per thread (worker start, first-call allocations and weight packing).
 */
async function train(plan: BenchPlan, batchSize: number, microBatchSize: number, steps: number): Promise<Record<string, number | string>> {
  const trainer = await makeTrainer(planSpec(plan, config.vision.layers), batchSize, microBatchSize);
  const onnx = await createOnnxPrefix(model, trainer.split);
  const prefix = computePrefix(trainer.split, onnx);
  const warmUpImages = microBatchSize * trainer.threads;
  await optimiserStep(trainer, 0, warmUpImages, microBatchSize, prefix);

  const started = performance.now();
  let loss = 0;
  for (let step = 0; step < steps; step++) loss = await optimiserStep(trainer, warmUpImages + step * batchSize, batchSize, microBatchSize, prefix);
  const seconds = (performance.now() - started) / 1000 / steps;
  const trainable = trainer.params.reduce((sum, p) => sum + p.variable.size, 0);
  await disposeTrainer(trainer);
  await onnx?.dispose();
  const prefixRuntime = trainer.split.start === 0 ? 'none' : onnx ? 'onnx' : 'tfjs';
  return { msPerImage: (1000 * seconds) / batchSize, imagesPerSecond: batchSize / seconds, trainableParams: trainable, loss, prefixRuntime, threads: trainer.threads };
}

/**
 * Trains three plans that share the frozen prefix (blocks 0 .. k-1) for `epochs` epochs over
 * `images` images each, and returns the sweep's wall time. With the cache, the prefix output
 * of each image is computed once and read back by every later epoch and plan.
 */
async function sweep(useCache: boolean, images: number, epochs: number, microBatchSize: number): Promise<Record<string, number | string>> {
  const layers = config.vision.layers;
  const k = firstTrainedBlock(layers);
  const plans = [
    `vision.block.${k}-${layers - 1},vision.head,head`,
    `vision.block.${k},head`,
    `vision.block.${k}-${Math.min(k + 1, layers - 1)},vision.head,head`,
  ];
  const cacheRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-bench-cache-'));
  let prefixImages = 0;
  let prefixRuntime = 'tfjs';
  const started = performance.now();
  try {
    for (const spec of plans) {
      const trainer = await makeTrainer(spec, Math.min(32, images), microBatchSize);
      const onnx = await createOnnxPrefix(model, trainer.split);
      if (onnx) prefixRuntime = 'onnx';
      const computed = computePrefix(trainer.split, onnx);
      const cache = useCache
        ? new ActivationCache(cacheRoot, { checkpointSha256: 'random-0', preprocessKey: 'random', lastFrozenUnit: trainer.split.lastFrozen!, shape: trainer.split.outputShape })
        : null;
      const prefix: Prefix = async (first, count) => {
        const rows = cache ? Array.from({ length: count }, (_, i) => cache.get(String(first + i))) : [];
        if (cache && rows.every((row) => row !== null)) {
          const data = new Float32Array(count * cache.valuesPerImage);
          rows.forEach((row, i) => data.set(row!, i * cache.valuesPerImage));
          return tf.tensor(data, [count, ...trainer.split.outputShape]);
        }
        prefixImages += count;
        const x = await computed(first, count);
        if (cache) {
          const values = x.dataSync() as Float32Array;
          for (let i = 0; i < count; i++) cache.put(String(first + i), values.slice(i * cache.valuesPerImage, (i + 1) * cache.valuesPerImage));
        }
        return x;
      };
      const batchSize = Math.min(32, images);
      for (let epoch = 0; epoch < epochs; epoch++) {
        for (let first = 0; first < images; first += batchSize) await optimiserStep(trainer, first, Math.min(batchSize, images - first), microBatchSize, prefix);
      }
      await disposeTrainer(trainer);
      await onnx?.dispose();
    }
  } finally {
    fs.rmSync(cacheRoot, { recursive: true, force: true });
  }
  const seconds = (performance.now() - started) / 1000;
  return { seconds, plans: plans.length, images, epochs, prefixImages, prefixRuntime };
}

let result: Record<string, number | string>;
if (task === 'forward') {
  const runtime = option('runtime', 'tfjs');
  if (runtime !== 'tfjs' && runtime !== 'onnx') throw new Error(`Invalid --runtime ${runtime}: expected tfjs or onnx.`);
  const batch = intOption('batch', 8);
  const repeats = intOption('repeats', 3);
  result = runtime === 'onnx' ? await forwardOnnx(batch, repeats) : forward(batch, repeats);
} else if (task === 'train') {
  const plan = option('plan', 'full') as BenchPlan;
  if (!['full', 'frozen8', 'head'].includes(plan)) throw new Error(`Invalid --plan ${plan}: expected full, frozen8 or head.`);
  const batchSize = intOption('batch-size', 32);
  const microBatchSize = intOption('micro-batch-size', 4);
  if (batchSize % microBatchSize !== 0) throw new Error(`Invalid --micro-batch-size ${microBatchSize}: it must divide --batch-size ${batchSize}.`);
  result = await train(plan, batchSize, microBatchSize, intOption('steps', 1));
} else if (task === 'sweep') {
  const cache = option('cache', 'on');
  if (cache !== 'on' && cache !== 'off') throw new Error(`Invalid --cache ${cache}: expected on or off.`);
  result = await sweep(cache === 'on', intOption('images', 32), intOption('epochs', 2), intOption('micro-batch-size', 4));
} else {
  throw new Error(`Invalid --task '${task}': expected forward, train or sweep.`);
}

console.log(JSON.stringify({ ...result, peakTensorBytes, wasmHeapBytes: wasmHeapBytes(), peakRssBytes: peakRssBytes(), backend: backend.name }));
model.dispose();
