// Freeze plans as the report draws them: one row per method and seed, one cell per layer unit,
// each cell frozen, trained or cut off, in the unit order of lib/freeze/units.ts.
import { layerUnits, type ClipGeometry } from '../freeze/units.ts';
import type { LoadedRun, PlanFile } from './load.ts';

export type PlanCellState = 'frozen' | 'trained' | 'cut off';

export interface PlanRow {
  method: string;
  seed: number | null;
  /** Origin of the plan: the strategy's selection.json or the run's config.json. */
  source: 'selection' | 'config';
  plan: PlanFile;
  /** One state per unit, in the order of `PlanTable.units`. */
  states: PlanCellState[];
}

export interface PlanTable {
  units: string[];
  rows: PlanRow[];
}

/** Returns the highest block index plus one of `tower` among the unit names (0 when none). */
function blocksOf(names: string[], tower: 'vision' | 'text'): number {
  let layers = 0;
  const pattern = new RegExp(`^${tower}\\.block\\.(\\d+)$`);
  for (const name of names) {
    const m = pattern.exec(name);
    if (m) layers = Math.max(layers, Number(m[1]) + 1);
  }
  return layers;
}

/**
 * Sorts unit names into the forward order of layerUnits() (lib/freeze/units.ts): vision embed,
 * blocks and head, then the text tower, logit_scale and the task head. The block counts come
 * from the names, since only the order matters here. Names that are not units go last.
 */
export function sortUnits(names: Iterable<string>): string[] {
  const unique = [...new Set(names)];
  const geometry: ClipGeometry = {
    embedDim: 1,
    vision: { imageSize: 1, patchSize: 1, width: 1, layers: blocksOf(unique, 'vision'), mlpDim: 1 },
    text: { contextLength: 1, vocabSize: 1, width: 1, layers: blocksOf(unique, 'text'), mlpDim: 1 },
  };
  const order = layerUnits(geometry).map((u) => u.name);
  const rank = (name: string) => (order.includes(name) ? order.indexOf(name) : order.length);
  return unique.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

/**
 * Returns true for units on the image-classification path (the vision tower and the task head).
 * Freeze plans can train only these, so the report leaves the text tower and logit_scale out.
 */
export function isImagePathUnit(name: string): boolean {
  return name.startsWith('vision.') || name === 'head';
}

/** Returns the number of vision blocks that the unit names imply (highest block index plus one). */
export function visionLayersOf(units: Iterable<string>): number {
  return blocksOf([...units], 'vision');
}

/** Reads a plan from a run: selection.json first, then config.json's `plan` when it is a plan object. */
export function recordedPlan(run: LoadedRun): { plan: PlanFile; source: 'selection' | 'config' } | null {
  if (run.selection?.plan && Array.isArray(run.selection.plan.train)) return { plan: run.selection.plan, source: 'selection' };

  const plan = run.config.plan as Partial<PlanFile> | undefined;
  if (plan && typeof plan === 'object' && Array.isArray(plan.train)) {
    let truncate = 0;
    if (typeof plan.truncate === 'number') truncate = plan.truncate;
    else if (typeof run.config.truncate === 'number') truncate = run.config.truncate;
    return { plan: { train: plan.train.map(String), truncate }, source: 'config' };
  }
  return null;
}

/**
 * Builds the plan table from every run with a plan object. Units are the image-path units named
 * by any plan or scored by any strategy. A plan given only as a string (such as 'all') has no unit list to
 * draw, so that run is left out.
 */
export function planTable(runs: LoadedRun[], methodOrder: string[]): PlanTable {
  const found = runs
    .map((run) => ({ run, found: recordedPlan(run) }))
    .filter((x): x is { run: LoadedRun; found: NonNullable<ReturnType<typeof recordedPlan>> } => x.found !== null);

  const named = new Set<string>();
  for (const { found: f } of found) for (const u of f.plan.train) named.add(u);
  for (const run of runs) for (const u of Object.keys(run.selection?.scores ?? {})) named.add(u);
  const units = sortUnits(named).filter(isImagePathUnit);
  const layers = visionLayersOf(units);

  // A selection run and the training run that uses its plan both carry the plan: keep one per method and seed.
  const seen = new Set<string>();
  const rows: PlanRow[] = [];
  for (const { run, found: f } of found) {
    const key = `${run.method}\u0000${run.seed}`;
    if (seen.has(key)) continue;
    seen.add(key);

    const train = new Set(f.plan.train);
    const states = units.map((unit): PlanCellState => {
      const m = /^vision\.block\.(\d+)$/.exec(unit);
      if (m && f.plan.truncate > 0 && Number(m[1]) >= layers - f.plan.truncate) return 'cut off';
      return train.has(unit) ? 'trained' : 'frozen';
    });
    rows.push({ method: run.method, seed: run.seed, source: f.source, plan: f.plan, states });
  }

  rows.sort((a, b) => methodOrder.indexOf(a.method) - methodOrder.indexOf(b.method) || (a.seed ?? 0) - (b.seed ?? 0));
  return { units, rows };
}
