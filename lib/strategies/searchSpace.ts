// The search space over freeze plans: a 0/1 mask over candidate units (which train), optionally
// restricted to one contiguous window or to a trained suffix after a frozen prefix (the shape
// AutoFreeze produces), crossed with the allowed truncation depths.
import type { FreezePlan } from '../freeze/plan.ts';
import { randomInt, type Rng } from '../util/rng.ts';
import type { MaskConfig } from './surrogate.ts';

export type MaskShape = 'any' | 'window' | 'prefix';
export const MASK_SHAPES: readonly MaskShape[] = ['any', 'window', 'prefix'];

export interface SearchSpace {
  /** Candidate units in forward order, e.g. vision.embed, vision.block.0..N-1, vision.head. */
  units: string[];
  /** 'any' subset; one contiguous 'window' of trained units; or 'prefix': a frozen prefix and every later unit trained. */
  shape: MaskShape;
  /** Units that train in every plan, e.g. the task head. */
  alwaysTrain: string[];
  /** Allowed truncation depths (top vision blocks cut off), e.g. [0] or [0, 1, 2]. */
  truncations: number[];
  /** Number of vision blocks of the model, needed to know which blocks a truncation removes. */
  visionLayers: number;
}

/** Above this many configurations the candidate pool is sampled instead of enumerated. */
export const ENUMERATION_LIMIT = 4096;

export function configKey(config: MaskConfig): string {
  return `t${config.truncate}:${config.mask}`;
}

/** Returns the units a truncation cuts off among the candidates (their mask bits are meaningless). */
export function cutOffUnits(space: SearchSpace, truncate: number): Set<string> {
  const cut = new Set<string>();
  for (const unit of space.units) {
    const match = /^vision\.block\.(\d+)$/.exec(unit);
    if (match && Number(match[1]) >= space.visionLayers - truncate) cut.add(unit);
  }
  return cut;
}

/**
 * Clears the bits of units that the truncation cuts off, so that two configurations that train
 * the same kept units share one key and are never trained twice.
 */
export function normaliseConfig(space: SearchSpace, config: MaskConfig): MaskConfig {
  const cut = cutOffUnits(space, config.truncate);
  const mask = space.units.map((u, i) => (cut.has(u) ? '0' : config.mask[i])).join('');
  return { mask, truncate: config.truncate };
}

export function planOf(space: SearchSpace, config: MaskConfig): FreezePlan {
  const trained = space.units.filter((_, i) => config.mask[i] === '1');
  const train = [...trained, ...space.alwaysTrain.filter((u) => !trained.includes(u))];
  return { train, truncate: config.truncate };
}

export function trainedUnits(space: SearchSpace, config: MaskConfig): string[] {
  return space.units.filter((_, i) => config.mask[i] === '1');
}

export function validateSpace(space: SearchSpace): void {
  if (space.units.length === 0) throw new Error('The search space has no candidate units; list at least one unit to search over.');
  if (new Set(space.units).size !== space.units.length) throw new Error(`The search space lists a unit twice: ${space.units.join(', ')}.`);
  if (!MASK_SHAPES.includes(space.shape)) {
    throw new Error(`Invalid mask shape '${space.shape}'. Allowed values: ${MASK_SHAPES.join(', ')}.`);
  }
  if (space.truncations.length === 0) throw new Error('The search space allows no truncation depth; use [0] for none.');
  for (const t of space.truncations) {
    if (!Number.isInteger(t) || t < 0 || t >= space.visionLayers) {
      throw new Error(`Invalid truncation depth ${t}; use an integer from 0 to ${space.visionLayers - 1} (the model has ${space.visionLayers} vision blocks).`);
    }
  }
}

/** Number of distinct masks of the space's shape for one truncation depth, before normalisation. */
export function maskCount(space: SearchSpace): number {
  const n = space.units.length;
  if (space.shape === 'prefix') return n + 1;
  if (space.shape === 'window') return (n * (n + 1)) / 2 + 1;
  return 2 ** n;
}

/**
 * Returns the distinct normalised configurations of the space, sorted by key, when there are at
 * most ENUMERATION_LIMIT of them; otherwise null (callers sample with `sampleConfig`).
 */
export function enumerateConfigs(space: SearchSpace): MaskConfig[] | null {
  if (maskCount(space) * space.truncations.length > ENUMERATION_LIMIT) return null;
  const n = space.units.length;
  const masks: string[] = [];
  if (space.shape === 'any') {
    for (let bits = 0; bits < 2 ** n; bits++) masks.push(Array.from({ length: n }, (_, i) => ((bits >> i) & 1 ? '1' : '0')).join(''));
  } else if (space.shape === 'prefix') {
    for (let start = 0; start <= n; start++) masks.push(windowMask(n, start, n));
  } else {
    masks.push(windowMask(n, 0, 0));
    for (let start = 0; start < n; start++) for (let end = start + 1; end <= n; end++) masks.push(windowMask(n, start, end));
  }

  const byKey = new Map<string, MaskConfig>();
  for (const truncate of space.truncations) {
    for (const mask of masks) {
      const config = normaliseConfig(space, { mask, truncate });
      byKey.set(configKey(config), config);
    }
  }
  return [...byKey.keys()].sort().map((k) => byKey.get(k)!);
}

/** Draws one configuration uniformly over the space's shape (before normalisation). */
export function sampleConfig(space: SearchSpace, rng: Rng): MaskConfig {
  const n = space.units.length;
  const truncate = space.truncations[randomInt(rng, space.truncations.length)];
  let mask: string;
  if (space.shape === 'any') {
    mask = Array.from({ length: n }, () => (rng() < 0.5 ? '1' : '0')).join('');
  } else if (space.shape === 'prefix') {
    mask = windowMask(n, randomInt(rng, n + 1), n);
  } else {
    const a = randomInt(rng, n + 1);
    const b = randomInt(rng, n + 1);
    mask = windowMask(n, Math.min(a, b), Math.max(a, b));
  }
  return normaliseConfig(space, { mask, truncate });
}

/** Builds a mask with units [start, end) set. */
function windowMask(n: number, start: number, end: number): string {
  return Array.from({ length: n }, (_, i) => (i >= start && i < end ? '1' : '0')).join('');
}
