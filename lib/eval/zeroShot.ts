// Zero-shot multi-label classifier built from prompt templates.
//
// For each finding f, positive prompts ("a chest x-ray showing {finding}") and negative prompts
// ("a chest x-ray with no {finding}") are encoded by the text tower. Prompt ensembling averages
// the L2-normalised text embeddings and renormalises, giving unit vectors pos_f and neg_f. The
// probability of f for an image with unit feature x is the softmax over the pair of scaled
// cosines, which equals a sigmoid of their difference:
//   p_f = softmax(s * [x.pos_f, x.neg_f])[0] = sigmoid(s * x.(pos_f - neg_f)),  s = logit scale
// so a linear head with W[:, f] = s * (pos_f - neg_f) and zero bias reproduces it (`linearHeadInit`).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import type { ClipTokenizer } from '../clip/tokenizer.ts';
import { moduleLog } from '../util/log.ts';

const logger = moduleLog('zero-shot');

/** Folder of the prompt files shipped with clipfreeze, one `<dataset>.json` per dataset. */
export const PROMPTS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'prompts');

/** The part of ClipModel the text side of zero-shot classification uses. */
export interface ClipTextTower {
  config: { text: { contextLength: number } };
  /** Token ids int32 [N, contextLength] to text features [N, E] (not normalised). */
  encodeText(ids: tf.Tensor2D): tf.Tensor2D;
  /** exp(logit_scale) as a scalar tensor. */
  logitScale(): tf.Scalar;
}

/** Prompt templates for one dataset, as stored in prompts/<dataset>.json. */
export interface PromptSet {
  dataset: string;
  /** Templates containing `{finding}`, describing an image that shows the finding. */
  positiveTemplates: string[];
  /** Templates containing `{finding}`, describing an image without the finding. */
  negativeTemplates: string[];
  /** Display name per finding label, e.g. Pleural_Thickening -> "pleural thickening". */
  findings: Record<string, string>;
}

/**
 * L2-normalised text features [E] by prompt text, computed ahead (e.g. on onnxruntime-node by
 * textFeatures.ts). Functions that take it encode only the texts it lacks, on TF.js.
 */
export type TextFeatures = Map<string, Float32Array>;

/** Per-finding unit text embeddings, row-major [F, E]. */
export interface ZeroShotClassifier {
  findings: string[];
  embedDim: number;
  positive: Float32Array;
  negative: Float32Array;
  /** exp(logit_scale) of the model that encoded the prompts. */
  logitScale: number;
}

/** Returns the shipped prompt file of a dataset. */
export function defaultPromptsFile(dataset: string): string {
  return path.join(PROMPTS_DIR, `${dataset}.json`);
}

/**
 * Reads and validates a prompt file. Every finding in `findings` needs a display name, and
 * every template must contain `{finding}`; errors name the file, the key and the fix.
 */
export function loadPrompts(file: string, findings: string[]): PromptSet {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`Failed to read the prompt file ${file}: ${(err as Error).message}`);
  }
  return validatePrompts(json, findings, file);
}

export function validatePrompts(json: unknown, findings: string[], source: string): PromptSet {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new Error(`Invalid prompt file ${source}: expected a JSON object with positiveTemplates, negativeTemplates and findings.`);
  }
  const obj = json as Record<string, unknown>;
  const positiveTemplates = validateTemplates(obj, 'positiveTemplates', source);
  const negativeTemplates = validateTemplates(obj, 'negativeTemplates', source);

  const names = obj.findings;
  if (typeof names !== 'object' || names === null || Array.isArray(names)) {
    throw new Error(`Invalid prompt file ${source}: missing key 'findings' (an object mapping each finding label to its display name).`);
  }
  const display = names as Record<string, unknown>;
  const missing = findings.filter((f) => typeof display[f] !== 'string' || (display[f] as string).trim() === '');
  if (missing.length) {
    throw new Error(`Invalid prompt file ${source}: 'findings' has no display name for ${missing.join(', ')}. Add e.g. "${missing[0]}": "${missing[0].toLowerCase().replace(/_/g, ' ')}".`);
  }
  const unused = Object.keys(display).filter((f) => !findings.includes(f));
  if (unused.length) logger.warn(`Prompt file ${source} names findings the dataset does not have, ignored: ${unused.join(', ')}`);

  return {
    dataset: typeof obj.dataset === 'string' ? obj.dataset : path.basename(source, '.json'),
    positiveTemplates,
    negativeTemplates,
    findings: Object.fromEntries(findings.map((f) => [f, display[f] as string])),
  };
}

function validateTemplates(obj: Record<string, unknown>, key: string, source: string): string[] {
  const value = obj[key];
  if (value === undefined) throw new Error(`Invalid prompt file ${source}: missing key '${key}' (a list of templates containing {finding}).`);
  if (!Array.isArray(value) || value.length === 0) throw new Error(`Invalid prompt file ${source}: '${key}' must be a non-empty list of strings.`);
  value.forEach((template, i) => {
    if (typeof template !== 'string') throw new Error(`Invalid prompt file ${source}: ${key}[${i}] is not a string.`);
    if (!template.includes('{finding}')) {
      throw new Error(`Invalid prompt file ${source}: template ${key}[${i}] "${template}" has no {finding} placeholder.`);
    }
  });
  return value as string[];
}

/** Fills `{finding}` (or another placeholder) in every template. */
export function renderTemplates(templates: string[], value: string, placeholder = '{finding}'): string[] {
  return templates.map((template) => template.split(placeholder).join(value));
}

/**
 * Encodes texts in batches and returns the ensemble embedding: the mean of the L2-normalised
 * text features, renormalised to unit length (Float32Array of length E).
 */
export function ensembleTextEmbedding(model: ClipTextTower, tokenizer: ClipTokenizer, texts: string[], batchSize = 64, precomputed?: TextFeatures): Float32Array {
  const features = encodeTextsNormalised(model, tokenizer, texts, batchSize, precomputed);
  const embedDim = features.length / texts.length;
  const mean = new Float32Array(embedDim);
  for (let i = 0; i < texts.length; i++) for (let e = 0; e < embedDim; e++) mean[e] += features[i * embedDim + e] / texts.length;
  return normaliseInPlace(mean);
}

/** Encodes texts in batches to L2-normalised features, row-major [N, E], or takes them from `precomputed` when it has every text. */
export function encodeTextsNormalised(model: ClipTextTower, tokenizer: ClipTokenizer, texts: string[], batchSize = 64, precomputed?: TextFeatures): Float32Array {
  if (precomputed && texts.every((text) => precomputed.has(text))) return concatFloat32(texts.map((text) => precomputed.get(text)!));
  const contextLength = model.config.text.contextLength;
  const parts: Float32Array[] = [];
  for (let start = 0; start < texts.length; start += batchSize) {
    const batch = texts.slice(start, start + batchSize);
    const ids = tokenizer.tokenize(batch, contextLength);
    const normalised = tf.tidy(() => {
      const features = model.encodeText(tf.tensor2d(ids, [batch.length, contextLength], 'int32'));
      return tf.div(features, tf.norm(features, 2, 1, true));
    });
    parts.push(normalised.dataSync() as Float32Array);
    normalised.dispose();
  }
  return concatFloat32(parts);
}

/** Returns every prompt text of a classifier: each finding's positive, then negative, templates filled in. */
export function zeroShotPromptTexts(prompts: PromptSet, findings: string[]): string[] {
  return findings.flatMap((finding) => {
    const name = prompts.findings[finding];
    if (name === undefined) return [];
    return [...renderTemplates(prompts.positiveTemplates, name), ...renderTemplates(prompts.negativeTemplates, name)];
  });
}

/**
 * Encodes every finding's positive and negative prompts into a zero-shot classifier. Texts in
 * `precomputed` (zeroShotPromptTexts lists them) are not encoded again.
 */
export function buildZeroShotClassifier(model: ClipTextTower, tokenizer: ClipTokenizer, prompts: PromptSet, findings: string[], precomputed?: TextFeatures): ZeroShotClassifier {
  const positiveRows: Float32Array[] = [];
  const negativeRows: Float32Array[] = [];
  for (const finding of findings) {
    const name = prompts.findings[finding];
    if (name === undefined) throw new Error(`No display name for finding ${finding} in the prompts of ${prompts.dataset}.`);
    positiveRows.push(ensembleTextEmbedding(model, tokenizer, renderTemplates(prompts.positiveTemplates, name), 64, precomputed));
    negativeRows.push(ensembleTextEmbedding(model, tokenizer, renderTemplates(prompts.negativeTemplates, name), 64, precomputed));
  }
  const scale = model.logitScale();
  const logitScale = scale.dataSync()[0];
  scale.dispose();
  logger.info(
    `Zero-shot classifier: ${findings.length} findings, ${prompts.positiveTemplates.length} positive and ${prompts.negativeTemplates.length} negative templates, logit scale ${logitScale.toFixed(3)}`,
  );
  return {
    findings: [...findings],
    embedDim: positiveRows[0]?.length ?? 0,
    positive: concatFloat32(positiveRows),
    negative: concatFloat32(negativeRows),
    logitScale,
  };
}

/**
 * Scores images with the classifier. `imageFeatures` is row-major [B, E] (normalised here);
 * returns probabilities row-major [B, F].
 */
export function zeroShotScores(classifier: ZeroShotClassifier, imageFeatures: Float32Array, batch: number): Float32Array {
  const { embedDim, findings, positive, negative, logitScale } = classifier;
  if (imageFeatures.length !== batch * embedDim) {
    throw new Error(`Image features have ${imageFeatures.length} values, expected ${batch} x ${embedDim}: the image and text towers disagree on the embedding size.`);
  }
  const scores = new Float32Array(batch * findings.length);
  for (let b = 0; b < batch; b++) {
    const x = normaliseInPlace(imageFeatures.slice(b * embedDim, (b + 1) * embedDim));
    for (let f = 0; f < findings.length; f++) {
      let difference = 0;
      for (let e = 0; e < embedDim; e++) difference += x[e] * (positive[f * embedDim + e] - negative[f * embedDim + e]);
      scores[b * findings.length + f] = 1 / (1 + Math.exp(-logitScale * difference));
    }
  }
  return scores;
}

/**
 * Returns the linear head that reproduces the zero-shot classifier on normalised image
 * features: weight row-major [E, F] with W[:, f] = s * (pos_f - neg_f), and zero bias [F].
 */
export function linearHeadInit(classifier: ZeroShotClassifier): { weight: Float32Array; bias: Float32Array; shape: [number, number] } {
  const { embedDim, findings, positive, negative, logitScale } = classifier;
  const count = findings.length;
  const weight = new Float32Array(embedDim * count);
  for (let f = 0; f < count; f++) {
    for (let e = 0; e < embedDim; e++) weight[e * count + f] = logitScale * (positive[f * embedDim + e] - negative[f * embedDim + e]);
  }
  return { weight, bias: new Float32Array(count), shape: [embedDim, count] };
}

export function normaliseInPlace(v: Float32Array): Float32Array {
  let sum = 0;
  for (const x of v) sum += x * x;
  const norm = Math.sqrt(sum);
  if (norm > 0) for (let i = 0; i < v.length; i++) v[i] /= norm;
  return v;
}

function concatFloat32(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}
