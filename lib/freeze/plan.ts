// Freeze plans: which layer units train, how many top vision blocks are cut off, and optional
// per-unit learning-rate multipliers. Written as JSON or as a short string:
//
//   all                              every vision unit that is not cut off, and the task head
//   head                             the task head only (a linear probe)
//   vision                           every vision unit that is not cut off
//   vision.block.8-11,vision.head    an inclusive range of blocks and single units
//   vision.block.*                   every kept vision block
//   {"train": ["vision.block.2", "head"], "truncate": 1, "lrScale": {"head": 10}}
//
// Names are literal: a plan trains the task head only when it lists `head` (or `all`).
import { layerUnits, type ClipGeometry } from './units.ts';

export interface FreezePlan {
  /** Names of the units that train; every other unit is frozen. */
  train: string[];
  /** Number of top vision blocks cut off; the remaining top block's class token goes to ln_post. */
  truncate: number;
  /** Learning-rate multiplier per unit (default 1). */
  lrScale?: Record<string, number>;
}

export class PlanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PlanError';
  }
}

/** Returns the names of the vision blocks that a truncation by `truncate` cuts off. */
export function cutOffBlocks(config: ClipGeometry, truncate: number): string[] {
  const names: string[] = [];
  for (let i = config.vision.layers - truncate; i < config.vision.layers; i++) names.push(`vision.block.${i}`);
  return names;
}

/** Returns the vision units kept after truncation, in forward order. */
export function keptVisionUnits(config: ClipGeometry, truncate: number): string[] {
  const cut = new Set(cutOffBlocks(config, truncate));
  return layerUnits(config)
    .filter((u) => u.tower === 'vision' && !cut.has(u.name))
    .map((u) => u.name);
}

/**
 * Parses a plan from a unit string or JSON (a string starting with `{`, or an object) and
 * validates it against the model's units. `truncate` applies when the spec does not set it.
 */
export function parsePlan(spec: string | Partial<FreezePlan>, config: ClipGeometry, truncate = 0): FreezePlan {
  let plan: FreezePlan;
  if (typeof spec === 'string' && spec.trim().startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(spec);
    } catch (err) {
      throw new PlanError(`Invalid freeze plan JSON: ${(err as Error).message}. Expected {"train": [...], "truncate": k}.`);
    }
    return parsePlan(parsed as Partial<FreezePlan>, config, truncate);
  }

  if (typeof spec === 'string') {
    plan = { train: expandUnitList(spec, config, truncate), truncate };
  } else {
    if (!spec || typeof spec !== 'object' || !Array.isArray(spec.train)) {
      throw new PlanError(`Invalid freeze plan: expected an object with a 'train' array of unit names, got ${JSON.stringify(spec)}.`);
    }
    const k = spec.truncate ?? truncate;
    const train = spec.train.flatMap((item) => {
      if (typeof item !== 'string') throw new PlanError(`Invalid unit name ${JSON.stringify(item)} in the plan's 'train' list: expected a string.`);
      return expandUnitList(item, config, k);
    });
    plan = { train, truncate: k };
    if (spec.lrScale !== undefined) plan.lrScale = { ...spec.lrScale };
  }

  plan.train = orderUnits([...new Set(plan.train)], config);
  validatePlan(plan, config);
  return plan;
}

/**
 * Checks unit names, the truncation depth, that no cut-off block trains, and that only units on
 * the image-classification path train. Throws a PlanError naming the value and the valid ones.
 */
export function validatePlan(plan: FreezePlan, config: ClipGeometry): void {
  const layers = config.vision.layers;
  if (!Number.isInteger(plan.truncate) || plan.truncate < 0 || plan.truncate > layers - 1) {
    throw new PlanError(`Invalid truncate ${plan.truncate}: must be an integer from 0 to ${layers - 1} (the image tower has ${layers} blocks and keeps at least one).`);
  }

  const all = layerUnits(config).map((u) => u.name);
  const valid = new Set(all);
  for (const name of [...plan.train, ...Object.keys(plan.lrScale ?? {})]) {
    if (!valid.has(name)) throw new PlanError(`Unknown layer unit '${name}'. Valid units: ${describeValidUnits(config)}.`);
  }

  if (plan.train.length === 0) {
    throw new PlanError("The freeze plan trains no unit. List at least one, e.g. 'head' (linear probe) or 'all' (full fine-tuning).");
  }

  const cut = new Set(cutOffBlocks(config, plan.truncate));
  for (const name of plan.train) {
    if (cut.has(name)) {
      throw new PlanError(`Unit '${name}' is cut off by truncate ${plan.truncate} and cannot train. Trainable vision blocks: vision.block.0-${layers - plan.truncate - 1}.`);
    }
    if (name.startsWith('text.') || name === 'logit_scale') {
      throw new PlanError(`Unit '${name}' is not on the image-classification path (image tower, then the task head), so it would receive no gradient. Train vision units or 'head'.`);
    }
  }

  for (const [name, scale] of Object.entries(plan.lrScale ?? {})) {
    if (typeof scale !== 'number' || !Number.isFinite(scale) || scale < 0) {
      throw new PlanError(`Invalid lrScale for '${name}': ${JSON.stringify(scale)}. Expected a finite number >= 0.`);
    }
  }
}

/** Formats a plan's trained units compactly, merging consecutive blocks into ranges. */
export function formatPlan(plan: FreezePlan): string {
  const parts: string[] = [];
  const blocks = plan.train
    .map((n) => /^vision\.block\.(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
  if (plan.train.includes('vision.embed')) parts.push('vision.embed');
  let i = 0;
  while (i < blocks.length) {
    let j = i;
    while (j + 1 < blocks.length && blocks[j + 1] === blocks[j] + 1) j++;
    parts.push(i === j ? `vision.block.${blocks[i]}` : `vision.block.${blocks[i]}-${blocks[j]}`);
    i = j + 1;
  }
  for (const name of plan.train) {
    if (name !== 'vision.embed' && !/^vision\.block\.\d+$/.test(name)) parts.push(name);
  }
  const text = parts.join(',');
  return plan.truncate ? `${text} (truncate ${plan.truncate})` : text;
}

function expandUnitList(spec: string, config: ClipGeometry, truncate: number): string[] {
  const out: string[] = [];
  const kept = keptVisionUnits(config, Math.max(0, Math.min(truncate, config.vision.layers - 1)));
  for (const raw of spec.split(',')) {
    const token = raw.trim();
    if (token === '') continue;
    if (token === 'all') {
      out.push(...kept, 'head');
      continue;
    }
    if (token === 'vision') {
      out.push(...kept);
      continue;
    }
    const wildcard = /^(vision|text)\.block\.\*$/.exec(token);
    if (wildcard) {
      const layers = wildcard[1] === 'vision' ? config.vision.layers - truncate : config.text.layers;
      for (let i = 0; i < layers; i++) out.push(`${wildcard[1]}.block.${i}`);
      continue;
    }
    const range = /^(vision|text)\.block\.(\d+)-(\d+)$/.exec(token);
    if (range) {
      const from = Number(range[2]);
      const to = Number(range[3]);
      if (to < from) throw new PlanError(`Invalid block range '${token}': the end ${to} is below the start ${from}.`);
      for (let i = from; i <= to; i++) out.push(`${range[1]}.block.${i}`);
      continue;
    }
    out.push(token);
  }
  return out;
}

function orderUnits(names: string[], config: ClipGeometry): string[] {
  const order = new Map(layerUnits(config).map((u, i) => [u.name, i]));
  return [...names].sort((a, b) => (order.get(a) ?? Infinity) - (order.get(b) ?? Infinity) || a.localeCompare(b));
}

function describeValidUnits(config: ClipGeometry): string {
  const v = config.vision.layers - 1;
  const t = config.text.layers - 1;
  return `vision.embed, vision.block.0-${v}, vision.head, text.embed, text.block.0-${t}, text.head, logit_scale, head (shorthands: all, vision, vision.block.*, ranges like vision.block.0-${v})`;
}
