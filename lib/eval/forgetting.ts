// Forgetting: source-domain zero-shot top-1 accuracy of a model's image tower, measured against
// the ORIGINAL (pretrained) text tower. Fine-tuning changes only the image tower, so comparing
// accuracy before and after shows how much of CLIP's natural-image knowledge the image features
// lost. Class embeddings are prompt ensembles ("a photo of a {class}." and variants).
//
// The image side runs on onnxruntime-node when the image tower is a ClipModel and the package
// is installed (see clip/imageFeatureEncoder.ts), on TF.js otherwise.
import type * as tf from '@tensorflow/tfjs';
import { createImageFeatureEncoder, tfjsImageFeatureEncoder, type ImageFeatureEncoder } from '../clip/imageFeatureEncoder.ts';
import { ClipModel } from '../clip/model.ts';
import { ImageDecodeError, preprocessImage, type PreprocessConfig } from '../clip/preprocess.ts';
import type { ClipTokenizer } from '../clip/tokenizer.ts';
import { openImageFolder, sampleImageFolder, type ImageFolderSet } from '../data/imageFolder.ts';
import { moduleLog } from '../util/log.ts';
import { createProgress } from '../util/progress.ts';
import { encodeTextsOnnx, hasOwnTextTower } from './textFeatures.ts';
import { ensembleTextEmbedding, normaliseInPlace, renderTemplates, type ClipTextTower, type TextFeatures } from './zeroShot.ts';

const logger = moduleLog('forgetting');

/** Five of the prompt templates that openai/CLIP uses for its ImageNet and CIFAR zero-shot evaluations. */
export const DEFAULT_SOURCE_TEMPLATES = [
  'a photo of a {class}.',
  'a blurry photo of a {class}.',
  'a photo of the large {class}.',
  'a photo of the small {class}.',
  'a low resolution photo of a {class}.',
];

/** The part of ClipModel the image side uses. */
export interface ClipImageTower {
  /** Pixels NCHW [B, 3, H, W] to image features [B, E] (not normalised). */
  encodeImage(pixels: tf.Tensor4D, options?: { truncate?: number }): tf.Tensor2D;
}

export interface SourceAccuracyOptions {
  /** Model whose image tower is measured (pretrained, or fine-tuned). */
  imageModel: ClipImageTower;
  /** Pretrained model whose text tower embeds the class prompts. */
  textModel: ClipTextTower;
  tokenizer: ClipTokenizer;
  /** Folder-per-class image set, or its path. */
  set: ImageFolderSet | string;
  /** Name of the set in logs and results, as the study config names it. Default: the folder name. */
  name?: string;
  preprocess: PreprocessConfig;
  /** Images per class, drawn with `seed`. All images when omitted. */
  limitPerClass?: number;
  seed?: number;
  /** Templates with `{class}`. */
  templates?: string[];
  batchSize?: number;
  /** Vision blocks removed from the top of the image tower (truncated models). */
  truncate?: number;
  /**
   * Encoder of `imageModel`'s features with the same `truncate`, to share one across sets.
   * Without it, one is created from the current weights for this call and disposed after it.
   */
  imageEncoder?: ImageFeatureEncoder;
}

export interface SourceAccuracy {
  name: string;
  root: string;
  /** Top-1 accuracy in [0, 1] over the images that decoded. */
  accuracy: number;
  correct: number;
  n: number;
  classes: number;
  /** Images that failed to decode, skipped with a warning. */
  skipped: number;
  limitPerClass: number | null;
  seed: number;
  templates: string[];
}

/** forgetting.json: accuracy per source set before and after fine-tuning. */
export interface ForgettingJson {
  sets: Record<string, { before: number; after: number; drop: number; n: number }>;
  /** Mean of `drop` over the sets (before - after, in accuracy points of [0, 1]). */
  meanDrop: number | null;
}

/**
 * Encodes each class's prompt ensemble with the text tower: unit vectors row-major [C, E].
 * Prompts in `precomputed` are not encoded again.
 */
export function classEmbeddings(textModel: ClipTextTower, tokenizer: ClipTokenizer, classNames: string[], templates = DEFAULT_SOURCE_TEMPLATES, precomputed?: TextFeatures): Float32Array[] {
  checkTemplates(templates);
  return classNames.map((name) => ensembleTextEmbedding(textModel, tokenizer, renderTemplates(templates, name, '{class}'), 64, precomputed));
}

/** Encodes the class prompts like classEmbeddings, on onnxruntime-node when the text tower is a ClipModel and the package is installed. */
async function encodeClassEmbeddings(textModel: ClipTextTower, tokenizer: ClipTokenizer, classNames: string[], templates: string[], name: string): Promise<Float32Array[]> {
  checkTemplates(templates);
  let precomputed: TextFeatures | null = null;
  if (hasOwnTextTower(textModel)) {
    const texts = classNames.flatMap((className) => renderTemplates(templates, className, '{class}'));
    precomputed = await encodeTextsOnnx(textModel, tokenizer, texts, `Forgetting prompt encoding (${name})`);
  }
  return classEmbeddings(textModel, tokenizer, classNames, templates, precomputed ?? undefined);
}

function checkTemplates(templates: string[]): void {
  for (const template of templates) {
    if (!template.includes('{class}')) throw new Error(`Invalid source-domain template "${template}": it has no {class} placeholder.`);
  }
}

/** Measures zero-shot top-1 accuracy of `imageModel`'s image tower on a folder-per-class set. */
export async function sourceZeroShotAccuracy(options: SourceAccuracyOptions): Promise<SourceAccuracy> {
  const set = typeof options.set === 'string' ? openImageFolder(options.set) : options.set;
  const seed = options.seed ?? 0;
  const templates = options.templates ?? DEFAULT_SOURCE_TEMPLATES;
  const batchSize = options.batchSize ?? 32;
  const samples = sampleImageFolder(set, options.limitPerClass, seed);
  const size = options.preprocess.size;
  const name = options.name ?? set.name;
  const classes = await encodeClassEmbeddings(options.textModel, options.tokenizer, set.classNames, templates, name);

  const encoder = options.imageEncoder ?? (await createEncoder(options.imageModel, size, options.truncate, `Forgetting (${name})`));
  try {
    return await measureAccuracy(options, { set, samples, classes, encoder, name, seed, templates, batchSize });
  } finally {
    if (!options.imageEncoder) await encoder.dispose();
  }
}

/**
 * Creates the feature encoder of an image tower: onnxruntime-node or TF.js for a ClipModel,
 * TF.js through its own encodeImage for a stand-in or a ClipModel whose encodeImage was replaced
 * (a wrapper or a spy expects its calls).
 */
async function createEncoder(tower: ClipImageTower, imageSize: number, truncate: number | undefined, pass: string): Promise<ImageFeatureEncoder> {
  if (tower instanceof ClipModel && tower.encodeImage === ClipModel.prototype.encodeImage) return createImageFeatureEncoder(tower, { truncate, pass });
  return tfjsImageFeatureEncoder(tower, imageSize, truncate);
}

interface MeasureInputs {
  set: ImageFolderSet;
  samples: ReturnType<typeof sampleImageFolder>;
  classes: Float32Array[];
  encoder: ImageFeatureEncoder;
  name: string;
  seed: number;
  templates: string[];
  batchSize: number;
}

async function measureAccuracy(options: SourceAccuracyOptions, inputs: MeasureInputs): Promise<SourceAccuracy> {
  const { set, samples, classes, encoder, name, seed, templates, batchSize } = inputs;
  const size = options.preprocess.size;
  let correct = 0;
  let n = 0;
  let skipped = 0;
  const progress = createProgress(`forgetting ${name}`, samples.length);
  for (let start = 0; start < samples.length; start += batchSize) {
    const batch = samples.slice(start, start + batchSize);

    // Decode and preprocess. A corrupt image is skipped and counted, not fatal.
    const pixels: Float32Array[] = [];
    const labels: number[] = [];
    for (const sample of batch) {
      try {
        pixels.push(await preprocessImage(sample.file, options.preprocess));
        labels.push(sample.label);
      } catch (err) {
        if (!(err instanceof ImageDecodeError)) throw err;
        skipped++;
        logger.warn(err.message);
      }
    }

    if (pixels.length > 0) {
      const input = new Float32Array(pixels.length * 3 * size * size);
      pixels.forEach((p, i) => input.set(p, i * p.length));
      const values = await encoder.encode(input, pixels.length);

      const embedDim = values.length / pixels.length;
      labels.forEach((label, i) => {
        const predicted = nearestClass(normaliseInPlace(values.slice(i * embedDim, (i + 1) * embedDim)), classes);
        if (predicted === label) correct++;
        n++;
      });
    }
    progress.tick(batch.length, { accuracy: n ? correct / n : 0 });
  }
  progress.stop();

  if (n === 0) throw new Error(`No image of ${set.root} could be decoded (${skipped} skipped); forgetting cannot be measured on it.`);
  const accuracy = correct / n;
  logger.info(`${name}: zero-shot top-1 ${(accuracy * 100).toFixed(2)}% on ${n} images, ${set.classNames.length} classes${skipped ? `, ${skipped} skipped` : ''}`);
  return {
    name,
    root: set.root,
    accuracy,
    correct,
    n,
    classes: set.classNames.length,
    skipped,
    limitPerClass: options.limitPerClass ?? null,
    seed,
    templates,
  };
}

/** Combines per-set accuracies before and after fine-tuning into forgetting.json. */
export function summariseForgetting(before: SourceAccuracy[], after: SourceAccuracy[]): ForgettingJson {
  const sets: ForgettingJson['sets'] = {};
  for (const b of before) {
    const a = after.find((x) => x.name === b.name);
    if (!a) throw new Error(`Source set ${b.name} was measured before fine-tuning but not after.`);
    sets[b.name] = { before: b.accuracy, after: a.accuracy, drop: b.accuracy - a.accuracy, n: a.n };
  }
  const drops = Object.values(sets).map((s) => s.drop);
  return { sets, meanDrop: drops.length ? drops.reduce((x, y) => x + y, 0) / drops.length : null };
}

function nearestClass(feature: Float32Array, classes: Float32Array[]): number {
  let best = -1;
  let bestScore = -Infinity;
  classes.forEach((embedding, c) => {
    let score = 0;
    for (let e = 0; e < feature.length; e++) score += feature[e] * embedding[e];
    if (score > bestScore) {
      bestScore = score;
      best = c;
    }
  });
  return best;
}
