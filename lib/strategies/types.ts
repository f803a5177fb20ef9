// The common shape of a layer-selection strategy. A strategy takes a model, a target dataset,
// settings and a seed. It returns a freeze plan, the per-unit evidence behind it and the cost
// of the selection itself, so a report can weigh a choice against its price.
import type { ClipModel } from '../clip/model.ts';
import type { TargetDataset } from '../data/dataset.ts';
import type { FreezePlan } from '../freeze/plan.ts';

export type StrategyName = 'similarity' | 'gradient' | 'search';

/** Cost of a selection: wall time, estimated floating-point operations and images forwarded. */
export interface SelectionCost {
  wallSeconds: number;
  flops: number;
  imagesSeen: number;
}

/** A strategy's output; selection.json stores it with `strategy` added. */
export interface SelectionResult {
  plan: FreezePlan;
  /** One score per layer unit, higher = more worth training. Units a strategy cannot measure get 0 and are listed in details.unscored. */
  scores: Record<string, number>;
  cost: SelectionCost;
  details: Record<string, unknown>;
}

export interface SelectionJson extends SelectionResult {
  strategy: StrategyName;
}

/**
 * A layer-selection strategy: similaritySelect, gradientSelect and searchSelect have this shape.
 * Settings carry the number of units to train or a budget, and the seed of everything random.
 */
export type Strategy<Settings extends { seed: number }> = (model: ClipModel, dataset: TargetDataset, settings: Settings) => Promise<SelectionResult>;

export function zeroCost(): SelectionCost {
  return { wallSeconds: 0, flops: 0, imagesSeen: 0 };
}

export function addCost(a: SelectionCost, b: SelectionCost): SelectionCost {
  return { wallSeconds: a.wallSeconds + b.wallSeconds, flops: a.flops + b.flops, imagesSeen: a.imagesSeen + b.imagesSeen };
}

/**
 * Returns the `k` names with the highest scores, ties broken by the order of `names`
 * (so the result is deterministic). Throws when k is outside 1..names.length.
 */
export function topK(names: string[], scores: Record<string, number>, k: number): string[] {
  if (!Number.isInteger(k) || k < 1 || k > names.length) {
    throw new Error(`Invalid number of units to train: ${k}. Use an integer from 1 to ${names.length} (the number of candidate units).`);
  }
  const order = names.map((name, index) => ({ name, index, score: scores[name] ?? Number.NEGATIVE_INFINITY }));
  order.sort((a, b) => b.score - a.score || a.index - b.index);
  const chosen = new Set(order.slice(0, k).map((o) => o.name));
  return names.filter((n) => chosen.has(n));
}
