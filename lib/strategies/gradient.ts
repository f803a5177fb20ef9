// Gradient-based layer selection on the first batches of target data.
//
// - Relative gradient norm (Auto-RGN, Lee et al. 2023, "Surgical Fine-Tuning Improves Adaptation
//   to Distribution Shifts"): per unit, ||grad|| / ||weights|| over the unit's parameters,
//   averaged over batches. Units with a large RGN are the ones the target loss wants to move.
// - AutoFreeze rate (Liu et al. 2021, "AutoFreeze: Automatically Freezing Model Blocks to
//   Accelerate Fine-tuning"): per unit, the mean relative change of the gradient norm between
//   consecutive intervals of training steps. A unit whose gradient norm has stopped changing
//   is converged and can be frozen. AutoFreeze freezes only a prefix of the network.
//
// The selection trains the top K units, trains the suffix after the frozen prefix (AutoFreeze),
// or trains every candidate with a per-unit learning-rate multiplier (plan.lrScale).
import * as tf from '@tensorflow/tfjs';
import type { ClipModel } from '../clip/model.ts';
import type { TargetDataset } from '../data/dataset.ts';
import type { FreezePlan } from '../freeze/plan.ts';
import { HEAD_UNIT, layerUnits, type LayerUnit } from '../freeze/units.ts';
import { AdamW } from '../train/adamw.ts';
import { trainFlopsPerImage } from '../train/cost.ts';
import { moduleLog } from '../util/log.ts';
import { createProgress } from '../util/progress.ts';
import { accumulateGradients, disposeGradients, type WeightedLoss } from './accumulate.ts';
import { loadTargetBatches, microBatchLosses, preprocessFor, zeroShotHead } from './target.ts';
import { topK, type SelectionResult, type Strategy } from './types.ts';

const logger = moduleLog('gradient');

/** Gradient and weight L2 norms per unit for one loss evaluation. */
export interface UnitNorms {
  loss: number;
  gradNorm: Record<string, number>;
  weightNorm: Record<string, number>;
}

/**
 * Computes the gradient of `loss` (one closure, or micro-batch losses weighted by their share
 * of the batch) with respect to every parameter of `units` found in `variables`. Returns
 * per-unit L2 norms: the square root of the sum of squares over the unit's parameters. Units
 * with no parameter in `variables` are left out. `onGradients` receives the gradients by
 * canonical name before they are disposed, e.g. to take an optimiser step.
 */
export function unitGradientNorms(
  variables: Map<string, tf.Variable>,
  units: LayerUnit[],
  loss: (() => tf.Scalar) | WeightedLoss[],
  onGradients?: (grads: Map<string, tf.Tensor>) => void,
): UnitNorms {
  const owned = units
    .map((unit) => ({ unit: unit.name, params: unit.params.map((p) => p.name).filter((name) => variables.has(name)) }))
    .filter((u) => u.params.length > 0);
  const params = new Map(owned.flatMap((u) => u.params.map((name) => [name, variables.get(name)!] as const)));
  const parts = Array.isArray(loss) ? loss : [{ loss, weight: 1 }];

  const { loss: value, grads } = accumulateGradients(params, parts);
  try {
    const gradNorm: Record<string, number> = {};
    const weightNorm: Record<string, number> = {};
    for (const u of owned) {
      let gradSquares = 0;
      let weightSquares = 0;
      for (const name of u.params) {
        const grad = grads.get(name);
        // A parameter the loss does not depend on has no gradient entry; its norm is 0.
        if (grad) gradSquares += sumOfSquares(grad);
        weightSquares += sumOfSquares(variables.get(name)!);
      }
      gradNorm[u.unit] = Math.sqrt(gradSquares);
      weightNorm[u.unit] = Math.sqrt(weightSquares);
    }
    onGradients?.(grads);
    return { loss: value, gradNorm, weightNorm };
  } finally {
    disposeGradients(grads);
  }
}

/**
 * Sum of squares accumulated in float64. A float32 tf.sum over millions of values (the token
 * embedding has 25 million in ViT-B/32) loses about three significant digits.
 */
function sumOfSquares(tensor: tf.Tensor): number {
  const values = tensor.dataSync();
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i] * values[i];
  return s;
}

export type GradientMethod = 'rgn' | 'autofreeze';
export const GRADIENT_METHODS: readonly GradientMethod[] = ['rgn', 'autofreeze'];

export interface GradientSettings {
  method: GradientMethod;
  /** Number of candidate units to train. Without it: rgn trains the top 4, autofreeze uses the percentile rule. */
  units?: number;
  /** Output per-unit learning-rate multipliers for every candidate instead of a top-K subset (rgn only). */
  lrScale?: boolean;
  /** Batches of target training images to measure on (default 8). */
  batches?: number;
  batchSize?: number;
  /** Images per forward/backward pass (default 4); gradients are accumulated over a batch. */
  microBatchSize?: number;
  /** AutoFreeze: batches per interval (default 2) and the optimiser step between batches. */
  interval?: number;
  learningRate?: number;
  /** AutoFreeze: units whose rate is below this percentile of all rates are converged (default 50). */
  percentile?: number;
  seed: number;
  /** Tokenizer files for the zero-shot head; default: the checkpoint folder, else the shipped vocabulary. */
  tokenizerDir?: string;
}

/**
 * Scores every layer unit by gradient statistics on the first target batches and returns a plan.
 * Candidates are the vision units; the task head always trains. Text units and the logit scale
 * do not affect the task loss, so they score 0 and are listed in details.unscored.
 */
export async function gradientSelect(model: ClipModel, dataset: TargetDataset, settings: GradientSettings): Promise<SelectionResult> {
  const started = Date.now();
  const batchCount = settings.batches ?? 8;
  const batchSize = settings.batchSize ?? 8;
  const interval = settings.interval ?? 2;
  if (settings.method === 'autofreeze' && batchCount < 2 * interval) {
    throw new Error(`AutoFreeze compares gradient norms between intervals: use at least ${2 * interval} batches (2 intervals of ${interval}), got ${batchCount}.`);
  }

  const units = layerUnits(model.config, dataset.findings.length);
  const candidates = units.filter((u) => u.tower === 'vision');
  const measured = units.filter((u) => u.tower === 'vision' || u.name === HEAD_UNIT);
  const batches = await loadTargetBatches(dataset, preprocessFor(model), { split: 'train', count: batchCount, batchSize, seed: settings.seed });
  const head = await zeroShotHead(model, dataset, settings.tokenizerDir);
  const variables = new Map<string, tf.Variable>([...model.params, ...head.variables()]);

  // AutoFreeze observes gradient norms while training, so it steps an optimiser between
  // batches; the weights are restored afterwards. RGN measures the pretrained weights.
  const snapshot = settings.method === 'autofreeze' ? snapshotVariables(variables, measured) : null;
  const optimiser = snapshot ? createOptimiser(variables, measured) : null;

  const learningRate = settings.learningRate ?? 1e-5;
  const microBatchSize = settings.microBatchSize ?? 4;
  const perBatch: UnitNorms[] = [];
  const progress = createProgress('gradient statistics', batches.length);
  try {
    for (const batch of batches) {
      const step = optimiser ? (grads: Map<string, tf.Tensor>) => optimiser.applyGradients(grads, learningRate) : undefined;
      const norms = unitGradientNorms(variables, measured, microBatchLosses(model, head, batch, microBatchSize), step);
      if (!Number.isFinite(norms.loss)) {
        const ids = batch.samples.map((sample) => sample.id).join(', ');
        throw new Error(`The task loss is ${norms.loss} on target batch ${perBatch.length} (images ${ids}); check those images and the checkpoint for NaN values, or lower the learning rate.`);
      }
      perBatch.push(norms);
      progress.tick(1, { loss: norms.loss });
    }
  } finally {
    progress.stop();
    if (snapshot) restoreVariables(variables, snapshot);
    optimiser?.dispose();
    head.dispose();
  }

  const rgn = averageRgn(perBatch, measured);
  const rates = settings.method === 'autofreeze' ? autoFreezeRates(perBatch, measured, interval) : null;
  const scoreOf = rates ?? rgn;
  const scores: Record<string, number> = {};
  for (const unit of units) scores[unit.name] = scoreOf[unit.name] ?? 0;

  const plan = choosePlan(candidates.map((u) => u.name), scoreOf, settings);
  const imagesSeen = batches.reduce((n, b) => n + b.samples.length, 0);
  const allVision: FreezePlan = { train: [...candidates.map((u) => u.name), HEAD_UNIT], truncate: 0 };
  logger.info(`Gradient selection (${settings.method}): train ${plan.train.join(', ')}`);

  return {
    plan,
    scores,
    cost: {
      wallSeconds: (Date.now() - started) / 1000,
      flops: imagesSeen * trainFlopsPerImage(model.config, allVision, dataset.findings.length),
      imagesSeen,
    },
    details: {
      method: settings.method,
      batches: batches.length,
      batchSize,
      microBatchSize,
      rgn,
      autoFreezeRate: rates,
      gradNormPerBatch: perBatch.map((b) => b.gradNorm),
      weightNorm: perBatch[0]?.weightNorm ?? {},
      lossPerBatch: perBatch.map((b) => b.loss),
      candidates: candidates.map((u) => u.name),
      unscored: units.filter((u) => !measured.includes(u)).map((u) => u.name),
      ...(settings.method === 'autofreeze' ? { interval, percentile: settings.percentile ?? 50, learningRate } : {}),
    },
  };
}

/** Mean over batches of ||grad|| / ||weights|| per unit (0 for a unit whose weights are all zero). */
export function averageRgn(perBatch: UnitNorms[], units: LayerUnit[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const unit of units) {
    const values = perBatch.map((b) => (b.weightNorm[unit.name] > 0 ? b.gradNorm[unit.name] / b.weightNorm[unit.name] : 0));
    out[unit.name] = values.reduce((s, v) => s + v, 0) / Math.max(values.length, 1);
  }
  return out;
}

/**
 * AutoFreeze rate per unit: gradient norms are averaged within consecutive intervals of
 * `interval` batches, and the rate is the mean of |G_k - G_(k-1)| / G_(k-1) over intervals.
 * A trailing partial interval is dropped.
 */
export function autoFreezeRates(perBatch: UnitNorms[], units: LayerUnit[], interval: number): Record<string, number> {
  const intervals = Math.floor(perBatch.length / interval);
  const out: Record<string, number> = {};
  for (const unit of units) {
    const means: number[] = [];
    for (let k = 0; k < intervals; k++) {
      const slice = perBatch.slice(k * interval, (k + 1) * interval);
      means.push(slice.reduce((s, b) => s + b.gradNorm[unit.name], 0) / slice.length);
    }
    let rate = 0;
    for (let k = 1; k < means.length; k++) rate += means[k - 1] > 0 ? Math.abs(means[k] - means[k - 1]) / means[k - 1] : 0;
    out[unit.name] = means.length > 1 ? rate / (means.length - 1) : 0;
  }
  return out;
}

/**
 * Turns scores into a plan over the candidate units (in forward order) plus the task head. The
 * plan trains the top K, or the units after AutoFreeze's frozen prefix of units below the
 * percentile, or every candidate with lrScale.
 */
export function choosePlan(candidates: string[], scores: Record<string, number>, settings: Pick<GradientSettings, 'method' | 'units' | 'lrScale' | 'percentile'>): FreezePlan {
  if (settings.lrScale) {
    if (settings.method !== 'rgn') throw new Error(`Per-unit learning rates (lrScale) come from the relative gradient norm; use method 'rgn', not '${settings.method}'.`);
    const max = Math.max(...candidates.map((u) => scores[u] ?? 0));
    const lrScale: Record<string, number> = {};
    for (const u of candidates) lrScale[u] = max > 0 ? (scores[u] ?? 0) / max : 1;
    return { train: [...candidates, HEAD_UNIT], truncate: 0, lrScale };
  }
  if (settings.method === 'autofreeze' && settings.units === undefined) {
    const threshold = percentileOf(candidates.map((u) => scores[u] ?? 0), settings.percentile ?? 50);
    let prefix = 0;
    while (prefix < candidates.length - 1 && (scores[candidates[prefix]] ?? 0) < threshold) prefix++;
    return { train: [...candidates.slice(prefix), HEAD_UNIT], truncate: 0 };
  }
  return { train: [...topK(candidates, scores, settings.units ?? Math.min(4, candidates.length)), HEAD_UNIT], truncate: 0 };
}

/** Linear-interpolated percentile (numpy's default method) of `values`, p in [0, 100]. */
export function percentileOf(values: number[], p: number): number {
  if (!(p >= 0 && p <= 100)) throw new Error(`Invalid percentile ${p}; use a number from 0 to 100.`);
  const sorted = [...values].sort((a, b) => a - b);
  const position = ((sorted.length - 1) * p) / 100;
  const low = Math.floor(position);
  const high = Math.ceil(position);
  return sorted[low] + (sorted[high] - sorted[low]) * (position - low);
}

function snapshotVariables(variables: Map<string, tf.Variable>, units: LayerUnit[]): Map<string, tf.Tensor> {
  const copies = new Map<string, tf.Tensor>();
  for (const unit of units) for (const p of unit.params) if (variables.has(p.name)) copies.set(p.name, tf.keep(variables.get(p.name)!.clone()));
  return copies;
}

function restoreVariables(variables: Map<string, tf.Variable>, snapshot: Map<string, tf.Tensor>): void {
  for (const [name, value] of snapshot) {
    variables.get(name)!.assign(value);
    value.dispose();
  }
}

function createOptimiser(variables: Map<string, tf.Variable>, units: LayerUnit[]): AdamW {
  const params = units.flatMap((unit) =>
    unit.params.filter((p) => variables.has(p.name)).map((p) => ({ name: p.name, variable: variables.get(p.name)!, lrScale: 1, decay: false })),
  );
  return new AdamW(params);
}

/** The strategy under the common Strategy type, for callers that hold strategies by name. */
export const gradientStrategy: Strategy<GradientSettings> = gradientSelect;
