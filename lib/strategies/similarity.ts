// Similarity-based layer selection: how far the target domain moves each vision unit's
// representation. Units that shift most are the ones to train.
//
//   mmd, frechet  distance between the class-token activations of source-domain images (any
//                 folder-per-class natural set) and target images, per unit, under the
//                 pretrained model. Each distance is divided by tr(S_source) + tr(S_target),
//                 because the residual stream's scale grows with depth and raw distances would
//                 favour the top blocks for that reason alone.
//   cka           1 - linear CKA between the pretrained model and a copy briefly fine-tuned on
//                 target training images, per unit, on the same target images.
//
// A unit's activation is the mean patch token after ln_pre for vision.embed (its class token is
// the same for every image), the class token after each residual block for vision.block.i,
// and the image features for vision.head. These forward passes run on onnxruntime-node when it
// is installed (all units are outputs of one exported graph), on TF.js otherwise.
import * as tf from '@tensorflow/tfjs';
import { ClipModel } from '../clip/model.ts';
import { createOnnxImageEncoderIfEnabled } from '../clip/onnxImageEncoder.ts';
import { preprocessImage, type PreprocessConfig } from '../clip/preprocess.ts';
import type { TargetDataset } from '../data/dataset.ts';
import { openImageFolder, sampleImageFolder } from '../data/imageFolder.ts';
import { HEAD_UNIT, layerUnits } from '../freeze/units.ts';
import { AdamW } from '../train/adamw.ts';
import { forwardFlopsPerImage, trainFlopsPerImage } from '../train/cost.ts';
import { moduleLog } from '../util/log.ts';
import { createProgress } from '../util/progress.ts';
import { features, linearCka, minibatchCka, type Features } from './cka.ts';
import { frechetDistance, linearMmd2 } from './distance.ts';
import { accumulateGradients, disposeGradients } from './accumulate.ts';
import { loadTargetBatches, microBatchLosses, preprocessFor, zeroShotHead, type TargetBatch } from './target.ts';
import { topK, type SelectionResult, type Strategy } from './types.ts';

const logger = moduleLog('similarity');

export type SimilarityMethod = 'mmd' | 'frechet' | 'cka';
export const SIMILARITY_METHODS: readonly SimilarityMethod[] = ['mmd', 'frechet', 'cka'];

export interface SimilaritySettings {
  method: SimilarityMethod;
  /** Number of vision units to train (default 4). */
  units?: number;
  /** Folder-per-class source-domain images; required by mmd and frechet. */
  sourceDir?: string;
  /** Source images per class (default 10). */
  sourcePerClass?: number;
  /** Target training images forwarded (default 64). */
  targetImages?: number;
  /** Images per forward pass (default 16). */
  batchSize?: number;
  /** cka: images per forward/backward pass of the adaptation (default 4); gradients accumulate over 8. */
  microBatchSize?: number;
  /** cka: fine-tuning steps of the adapted copy (default 8), at this learning rate (default 1e-5). */
  adaptSteps?: number;
  learningRate?: number;
  /** cka: minibatch size of the unbiased minibatch estimator; without it, full-data linear CKA. */
  ckaBatch?: number;
  seed: number;
  tokenizerDir?: string;
}

/** Scores the vision units by representation shift and returns a plan that trains the top K and the task head. */
export async function similaritySelect(model: ClipModel, dataset: TargetDataset, settings: SimilaritySettings): Promise<SelectionResult> {
  const started = Date.now();
  const batchSize = settings.batchSize ?? 16;
  const cfg = preprocessFor(model);
  const allUnits = layerUnits(model.config, dataset.findings.length);
  const candidates = allUnits.filter((u) => u.tower === 'vision').map((u) => u.name);
  const forwardFlops = forwardFlopsPerImage(model.config, { train: [], truncate: 0 }, dataset.findings.length);

  const targetBatches = await loadTargetBatches(dataset, cfg, { split: 'train', count: 1, batchSize: settings.targetImages ?? 64, seed: settings.seed });
  const target = concatBatches(targetBatches);
  let imagesSeen = 0;
  let flops = 0;
  let shift: Record<string, number>;
  const details: Record<string, unknown> = { method: settings.method, targetImages: target.n };

  if (settings.method === 'cka') {
    const adapted = await adaptCopy(model, dataset, settings);
    imagesSeen += adapted.imagesSeen;
    flops += adapted.flops;
    const before = await collectUnitFeatures(model, target.pixels, target.n, batchSize, 'pretrained on target');
    const after = await collectUnitFeatures(adapted.model, target.pixels, target.n, batchSize, 'adapted on target');
    adapted.model.dispose();
    imagesSeen += 2 * target.n;
    flops += 2 * target.n * forwardFlops;

    shift = {};
    const cka: Record<string, number> = {};
    for (const unit of candidates) {
      const x = before.get(unit)!;
      const y = after.get(unit)!;
      cka[unit] = settings.ckaBatch ? minibatchCka(x, y, settings.ckaBatch) : linearCka(x, y);
      shift[unit] = 1 - cka[unit];
    }
    Object.assign(details, { cka, adaptSteps: adapted.steps, learningRate: settings.learningRate ?? 1e-5, estimator: settings.ckaBatch ? `minibatch ${settings.ckaBatch}` : 'full' });
  } else {
    if (!settings.sourceDir) {
      throw new Error(`Similarity method '${settings.method}' compares source and target activations: pass a folder-per-class source image set (--source DIR).`);
    }
    const source = await loadSourceImages(settings.sourceDir, cfg, settings.sourcePerClass ?? 10, settings.seed);
    const sourceFeatures = await collectUnitFeatures(model, source.pixels, source.n, batchSize, 'source');
    const targetFeatures = await collectUnitFeatures(model, target.pixels, target.n, batchSize, 'target');
    imagesSeen += source.n + target.n;
    flops += (source.n + target.n) * forwardFlops;

    shift = {};
    const raw: Record<string, number> = {};
    for (const unit of candidates) {
      const s = sourceFeatures.get(unit)!;
      const t = targetFeatures.get(unit)!;
      raw[unit] = settings.method === 'mmd' ? linearMmd2(s, t) : frechetDistance(s, t);
      const scale = totalVariance(s) + totalVariance(t);
      shift[unit] = scale > 0 ? raw[unit] / scale : 0;
    }
    Object.assign(details, { rawDistance: raw, source: { dir: settings.sourceDir, images: source.n, classes: source.classes } });
  }

  const scores: Record<string, number> = {};
  for (const unit of allUnits) scores[unit.name] = shift[unit.name] ?? 0;
  const chosen = topK(candidates, shift, settings.units ?? Math.min(4, candidates.length));
  logger.info(`Similarity selection (${settings.method}): train ${chosen.join(', ')} and the task head`);

  return {
    plan: { train: [...chosen, HEAD_UNIT], truncate: 0 },
    scores,
    cost: { wallSeconds: (Date.now() - started) / 1000, flops, imagesSeen },
    details: { ...details, candidates, unscored: allUnits.filter((u) => !candidates.includes(u.name)).map((u) => u.name) },
  };
}

/**
 * Forwards images through the vision tower and returns each vision unit's activation per image,
 * row-major [n, width] (or [n, embedDim] for vision.head). The model's current weights are used,
 * on onnxruntime-node unless CLIPFREEZE_PREFIX_RUNTIME=tfjs or the package is missing.
 */
export async function collectUnitFeatures(model: ClipModel, pixels: Float32Array, n: number, batchSize: number, label: string): Promise<Map<string, Features>> {
  const size = model.config.vision.imageSize;
  const imageFloats = 3 * size * size;
  const parts = new Map<string, Float32Array[]>();
  const push = (unit: string, values: Float32Array): void => {
    if (!parts.has(unit)) parts.set(unit, []);
    parts.get(unit)!.push(values);
  };

  const onnx = await createOnnxImageEncoderIfEnabled(model, { output: 'units' }, `Unit activations (${label})`);
  const progress = createProgress(`activations (${label})`, n);
  try {
    for (let start = 0; start < n; start += batchSize) {
      const count = Math.min(batchSize, n - start);
      const batch = pixels.subarray(start * imageFloats, (start + count) * imageFloats);
      const activations = onnx ? await onnx.encodeAll(batch, count) : unitActivationsTfjs(model, batch, count);
      for (const [unit, values] of activations) push(unit, values);
      progress.tick(count);
    }
  } finally {
    progress.stop();
    await onnx?.dispose();
  }

  const out = new Map<string, Features>();
  for (const [unit, chunks] of parts) {
    const total = chunks.reduce((s, c) => s + c.length, 0);
    const data = new Float32Array(total);
    let offset = 0;
    for (const c of chunks) {
      data.set(c, offset);
      offset += c.length;
    }
    out.set(unit, features(data, n, total / n));
  }
  return out;
}

/** Runs the vision tower on TF.js and returns each unit's activation, flat [count, width or embedDim]. */
function unitActivationsTfjs(model: ClipModel, pixels: Float32Array, count: number): Map<string, Float32Array> {
  const size = model.config.vision.imageSize;
  const out = new Map<string, Float32Array>();
  const read = (unit: string, tensor: tf.Tensor2D): void => {
    out.set(unit, tensor.dataSync() as Float32Array);
  };
  tf.tidy(() => {
    let x = model.visionEmbed(tf.tensor4d(pixels, [count, 3, size, size]));
    read('vision.embed', meanPatchToken(x));
    for (let i = 0; i < model.config.vision.layers; i++) {
      x = model.visionBlock(i, x);
      read(`vision.block.${i}`, classToken(x));
    }
    read('vision.head', model.visionHead(x));
  });
  return out;
}

/** Fine-tunes a copy of the model (every vision unit and the zero-shot task head) for a few AdamW steps. */
async function adaptCopy(
  model: ClipModel,
  dataset: TargetDataset,
  settings: SimilaritySettings,
): Promise<{ model: ClipModel; steps: number; imagesSeen: number; flops: number }> {
  const steps = settings.adaptSteps ?? 8;
  const lr = settings.learningRate ?? 1e-5;
  const copy = new ClipModel(model.config, model.getWeights());
  const head = await zeroShotHead(copy, dataset, settings.tokenizerDir);
  // A different seed from the measurement images, so that adaptation and measurement batches differ in order.
  const batches = await loadTargetBatches(dataset, preprocessFor(model), { split: 'train', count: steps, batchSize: 8, seed: settings.seed + 1 });

  const units = layerUnits(copy.config, dataset.findings.length).filter((u) => u.tower === 'vision' || u.name === HEAD_UNIT);
  const variables = new Map<string, tf.Variable>([...copy.params, ...head.variables()]);
  const params = units.flatMap((u) => u.params.map((p) => ({ name: p.name, variable: variables.get(p.name)!, lrScale: 1, decay: false })));
  const optimiser = new AdamW(params);
  const variablesByName = new Map(params.map((p) => [p.name, p.variable] as const));

  const progress = createProgress('adapting a copy', batches.length);
  let imagesSeen = 0;
  try {
    for (const batch of batches) {
      const { loss, grads } = accumulateGradients(variablesByName, microBatchLosses(copy, head, batch, settings.microBatchSize ?? 4));
      optimiser.applyGradients(grads, lr);
      disposeGradients(grads);
      imagesSeen += batch.samples.length;
      progress.tick(1, { loss });
    }
  } finally {
    progress.stop();
    optimiser.dispose();
    head.dispose();
  }
  const allVision = { train: [...units.map((u) => u.name)], truncate: 0 };
  return { model: copy, steps: batches.length, imagesSeen, flops: imagesSeen * trainFlopsPerImage(model.config, allVision, dataset.findings.length) };
}

async function loadSourceImages(dir: string, cfg: PreprocessConfig, perClass: number, seed: number): Promise<{ pixels: Float32Array; n: number; classes: number }> {
  const set = openImageFolder(dir);
  const samples = sampleImageFolder(set, perClass, seed);
  const imageFloats = 3 * cfg.size * cfg.size;
  const pixels = new Float32Array(samples.length * imageFloats);
  const progress = createProgress(`loading source images (${set.name})`, samples.length);
  for (let i = 0; i < samples.length; i++) {
    pixels.set(await preprocessImage(samples[i].file, cfg), i * imageFloats);
    progress.tick(1);
  }
  progress.stop();
  return { pixels, n: samples.length, classes: set.classFolders.length };
}

function concatBatches(batches: TargetBatch[]): { pixels: Float32Array; n: number } {
  const n = batches.reduce((s, b) => s + b.samples.length, 0);
  const total = batches.reduce((s, b) => s + b.pixels.length, 0);
  const pixels = new Float32Array(total);
  let offset = 0;
  for (const b of batches) {
    pixels.set(b.pixels, offset);
    offset += b.pixels.length;
  }
  return { pixels, n };
}

/** Returns the class token [B, W] of tokens [B, T, W]. */
function classToken(x: tf.Tensor3D): tf.Tensor2D {
  const [b, , w] = x.shape;
  return x.slice([0, 0, 0], [b, 1, w]).reshape([b, w]);
}

/** Returns the mean over the patch tokens (all but the class token) [B, W] of tokens [B, T, W]. */
function meanPatchToken(x: tf.Tensor3D): tf.Tensor2D {
  const [b, t, w] = x.shape;
  return x.slice([0, 1, 0], [b, t - 1, w]).mean(1) as tf.Tensor2D;
}

/** tr(S): the sum of the per-feature sample variances. */
function totalVariance(x: Features): number {
  let total = 0;
  for (let j = 0; j < x.d; j++) {
    let mean = 0;
    for (let i = 0; i < x.n; i++) mean += x.data[i * x.d + j];
    mean /= x.n;
    let s = 0;
    for (let i = 0; i < x.n; i++) s += (x.data[i * x.d + j] - mean) ** 2;
    total += s / (x.n - 1);
  }
  return total;
}

/** The strategy under the common Strategy type, for callers that hold strategies by name. */
export const similarityStrategy: Strategy<SimilaritySettings> = similaritySelect;
