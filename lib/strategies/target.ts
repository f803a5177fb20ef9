// Target-domain inputs shared by the model-based strategies: labelled training batches and a
// task head initialised from the zero-shot classifier, so that losses and gradients are those
// of the first steps of fine-tuning.
import * as tf from '@tensorflow/tfjs';
import type { ClipModel } from '../clip/model.ts';
import { preprocessConfigFrom, type PreprocessConfig } from '../clip/preprocess.ts';
import { ClipTokenizer } from '../clip/tokenizer.ts';
import { loadBatch } from '../data/batches.ts';
import type { Sample, Split, TargetDataset } from '../data/dataset.ts';
import { encodeTextsOnnx } from '../eval/textFeatures.ts';
import { buildZeroShotClassifier, linearHeadInit, loadPrompts, zeroShotPromptTexts } from '../eval/zeroShot.ts';
import { TaskHead } from '../train/head.ts';
import { bceWithLogits } from '../train/loss.ts';
import { createRng, shuffleInPlace } from '../util/rng.ts';
import type { WeightedLoss } from './accumulate.ts';

/** A labelled batch: pixels NCHW [n, 3, size, size] and labels row-major [n, findings]. */
export interface TargetBatch {
  pixels: Float32Array;
  labels: Float32Array;
  samples: Sample[];
}

/**
 * Loads `count` batches of `batchSize` images from `split`, in an order shuffled by `seed`.
 * Images that fail to load are skipped, so a batch can be smaller; empty batches are dropped.
 */
export async function loadTargetBatches(
  dataset: TargetDataset,
  cfg: PreprocessConfig,
  options: { split: Split; count: number; batchSize: number; seed: number },
): Promise<TargetBatch[]> {
  const all = shuffleInPlace([...dataset.samples(options.split)], createRng(options.seed));
  if (all.length === 0) {
    throw new Error(`The ${options.split} split of ${dataset.name} has no samples; check the data folder and the split limits.`);
  }
  const requested = all.slice(0, options.count * options.batchSize);
  const { pixels, kept } = await loadBatch(dataset, requested, cfg, { label: `Loading ${options.split} images` });

  const imageFloats = 3 * cfg.size * cfg.size;
  const findings = dataset.findings.length;
  const batches: TargetBatch[] = [];
  for (let start = 0; start < kept.length; start += options.batchSize) {
    const samples = kept.slice(start, start + options.batchSize);
    const labels = new Float32Array(samples.length * findings);
    samples.forEach((s, i) => labels.set(s.labels, i * findings));
    batches.push({ pixels: pixels.slice(start * imageFloats, (start + samples.length) * imageFloats), labels, samples });
  }
  return batches;
}

/**
 * Creates the task head from the dataset's zero-shot prompts, encoded by the model's text
 * tower (on onnxruntime-node when it is installed).
 */
export async function zeroShotHead(model: ClipModel, dataset: TargetDataset, tokenizerDir?: string): Promise<TaskHead> {
  const tokenizer = ClipTokenizer.fromDir(tokenizerDir);
  const prompts = loadPrompts(dataset.promptsFile, dataset.findings);
  const promptFeatures = await encodeTextsOnnx(model, tokenizer, zeroShotPromptTexts(prompts, dataset.findings), 'Task head prompt encoding');
  const classifier = buildZeroShotClassifier(model, tokenizer, prompts, dataset.findings, promptFeatures ?? undefined);
  return TaskHead.fromZeroShot(linearHeadInit(classifier));
}

/** Returns the fine-tuning loss of one batch: BCE with logits of the head on the image features. */
export function taskLoss(model: ClipModel, head: TaskHead, batch: TargetBatch): tf.Scalar {
  const n = batch.samples.length;
  const findings = batch.labels.length / n;
  const size = model.config.vision.imageSize;
  return tf.tidy(() => {
    const pixels = tf.tensor4d(batch.pixels, [n, 3, size, size]);
    const logits = head.apply(model.encodeImage(pixels));
    return bceWithLogits(logits, tf.tensor2d(batch.labels, [n, findings]));
  });
}

/**
 * Splits a batch into micro-batches of at most `size` images and returns their task losses,
 * each weighted by its share of the batch, for accumulateGradients.
 */
export function microBatchLosses(model: ClipModel, head: TaskHead, batch: TargetBatch, size: number): WeightedLoss[] {
  const n = batch.samples.length;
  const imageFloats = batch.pixels.length / n;
  const findings = batch.labels.length / n;
  const parts: WeightedLoss[] = [];
  for (let start = 0; start < n; start += size) {
    const end = Math.min(start + size, n);
    const micro: TargetBatch = {
      pixels: batch.pixels.subarray(start * imageFloats, end * imageFloats),
      labels: batch.labels.subarray(start * findings, end * findings),
      samples: batch.samples.slice(start, end),
    };
    parts.push({ loss: () => taskLoss(model, head, micro), weight: (end - start) / n });
  }
  return parts;
}

export function preprocessFor(model: ClipModel): PreprocessConfig {
  return preprocessConfigFrom(model.config);
}
