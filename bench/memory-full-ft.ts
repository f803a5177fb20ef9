// Shows that full fine-tuning of the ViT-B/32 image tower at an effective batch of 32 fits the
// wasm backend's 4 GiB heap, using the trainer's own gradient accumulation and AdamW.
// Weights, pixels and labels are random: only memory and speed are measured.
//
//   npx tsx bench/memory-full-ft.ts [--steps 1] [--batch-size 32] [--micro-batch-size 4]
//
// Prints peak tensor bytes (tf.memory) and peak process RSS after each optimiser update.
// One update takes minutes on a 2-core CPU.
import * as tf from '@tensorflow/tfjs';
import { PRESETS } from '../lib/clip/config.ts';
import { ClipModel } from '../lib/clip/model.ts';
import { countPlanParams } from '../lib/freeze/paramCount.ts';
import { parsePlan } from '../lib/freeze/plan.ts';
import { AdamW } from '../lib/train/adamw.ts';
import { GradientBuffer } from '../lib/train/gradientBuffer.ts';
import { parseTrainConfig } from '../lib/train/config.ts';
import { peakRssBytes, trainFlopsPerImage, wasmHeapBytes } from '../lib/train/cost.ts';
import { TaskHead } from '../lib/train/head.ts';
import { runPrefix, splitPoint } from '../lib/train/imagePath.ts';
import { accumulateGradients } from '../lib/train/microBatch.ts';
import { trainableParams } from '../lib/train/trainer.ts';
import { initBackend } from '../lib/util/backend.ts';

function argument(name: string, fallback: number): number {
  const index = process.argv.indexOf(name);
  return index >= 0 ? Number(process.argv[index + 1]) : fallback;
}

const steps = argument('--steps', 1);
const batchSize = argument('--batch-size', 32);
const microBatchSize = argument('--micro-batch-size', 4);
const findings = 14;
const gib = (bytes: number) => (bytes / 2 ** 30).toFixed(2);

const backend = await initBackend();
const config = PRESETS['ViT-B/32'];
const model = ClipModel.random(config, 0);
const head = TaskHead.random(config.embedDim, findings, 0);
const plan = parsePlan('all', config);
const split = splitPoint(model, plan);
const trainConfig = parseTrainConfig({ checkpoint: '(random)', data: '(random)', batchSize, microBatchSize });
const params = trainableParams(model, head, plan, trainConfig);
const optimizer = new AdamW(params, { weightDecay: trainConfig.weightDecay, beta1: trainConfig.beta1, beta2: trainConfig.beta2, eps: trainConfig.eps });
const counts = countPlanParams(plan, config, findings);
console.log(`backend ${backend.name}; ViT-B/32 random weights; trainable ${counts.trainable.toLocaleString('en-US')} parameters; batch ${batchSize} = ${batchSize / microBatchSize} x ${microBatchSize}`);
console.log(`after model and AdamW state: tensors ${gib(tf.memory().numBytes)} GiB, RSS ${gib(process.memoryUsage().rss)} GiB`);

let peakTensorBytes = tf.memory().numBytes;
const size = config.vision.imageSize;
for (let step = 0; step < steps; step++) {
  const started = performance.now();
  const grads = new GradientBuffer();
  let loss = 0;
  for (let m = 0; m < batchSize / microBatchSize; m++) {
    const pixels = tf.randomNormal([microBatchSize, 3, size, size], 0, 1, 'float32', step * 1000 + m) as tf.Tensor4D;
    const x = runPrefix(model, split, pixels);
    pixels.dispose();
    const labels = tf.tidy(() => tf.cast(tf.greater(tf.randomUniform([microBatchSize, findings], 0, 1, 'float32', m), 0.8), 'float32')) as tf.Tensor2D;
    const sample = () => {
      peakTensorBytes = Math.max(peakTensorBytes, tf.memory().numBytes);
    };
    loss += accumulateGradients(model, head, split, params, { x, labels }, batchSize, undefined, grads, sample) * (microBatchSize / batchSize);
    peakTensorBytes = Math.max(peakTensorBytes, tf.memory().numBytes);
    console.log(`  micro-batch ${m + 1}: tensors ${gib(tf.memory().numBytes)} GiB, wasm heap ${gib(wasmHeapBytes() ?? 0)} GiB, ${((performance.now() - started) / 1000).toFixed(0)} s`);
  }
  grads.clipByGlobalNorm(trainConfig.clipGradNorm);
  optimizer.applyGradients(grads.entries(), 1e-5);
  grads.clear();
  peakTensorBytes = Math.max(peakTensorBytes, tf.memory().numBytes);
  const seconds = (performance.now() - started) / 1000;
  const gflops = (trainFlopsPerImage(config, plan, findings) * batchSize) / seconds / 1e9;
  console.log(
    `step ${step + 1}: loss ${loss.toFixed(4)}, ${seconds.toFixed(1)} s (${(batchSize / seconds).toFixed(2)} img/s, ~${gflops.toFixed(1)} GFLOP/s), ` +
      `peak tensors ${gib(peakTensorBytes)} GiB, wasm heap ${gib(wasmHeapBytes() ?? 0)} GiB of 4, peak RSS ${gib(peakRssBytes())} GiB`,
  );
}
console.log(JSON.stringify({ backend: backend.name, batchSize, microBatchSize, steps, peakTensorBytes, wasmHeapBytes: wasmHeapBytes(), peakRssBytes: peakRssBytes() }));
