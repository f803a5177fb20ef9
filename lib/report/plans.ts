// Freeze plans as the report draws them: one row per method and seed, one cell per layer unit,
// each cell frozen, trained or cut off. Unit order follows the forward pass of each tower, as
// lib/freeze/units.ts lists the units.
import type { LoadedRun, PlanFile } from './load.ts';

export type UnitState = 'frozen' | 'trained' | 'cut off';

export interface PlanRow {
  method: string;
  seed: number | null;
  /** Origin of the plan: the strategy's selection.json or the run's config.json. */
  source: 'selection' | 'config';
  plan: PlanFile;
  /** One state per unit, in the order of `PlanTable.units`. */
  states: UnitState[];
}

export interface PlanTable {
  units: string[];
  rows: PlanRow[];
}

const TOWER_ORDER = ['vision', 'text', 'logit_scale', 'head'];

// TODO: take the order from layerUnits() in lib/freeze/units.ts once runs record the model
// geometry. Until then this sort repeats that order: embed, blocks and head per tower.
function unitSortKey(name: string): [number, number] {
  const [tower, part, index] = name.split('.');
  const towerRank = TOWER_ORDER.indexOf(tower);
  const rank = towerRank === -1 ? TOWER_ORDER.length : towerRank;
  if (part === 'embed') return [rank, -1];
  if (part === 'block') return [rank, Number(index)];
  if (part === 'head') return [rank, Number.MAX_SAFE_INTEGER];
  return [rank, 0];
}

/** Sorts unit names into forward order: vision embed, blocks, head, then text, logit_scale, task head. */
export function sortUnits(names: Iterable<string>): string[] {
  return [...new Set(names)].sort((a, b) => {
    const ka = unitSortKey(a);
    const kb = unitSortKey(b);
    return ka[0] - kb[0] || ka[1] - kb[1] || a.localeCompare(b);
  });
}

/** Returns the number of vision blocks that the unit names imply (highest block index plus one). */
export function visionLayersOf(units: Iterable<string>): number {
  let layers = 0;
  for (const u of units) {
    const m = /^vision\.block\.(\d+)$/.exec(u);
    if (m) layers = Math.max(layers, Number(m[1]) + 1);
  }
  return layers;
}

/** Reads a plan from a run: selection.json first, then config.json's `plan` when it is a plan object. */
export function planOf(run: LoadedRun): { plan: PlanFile; source: 'selection' | 'config' } | null {
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
 * Builds the plan table from every run with a plan object. Units are those named by any plan or
 * scored by any strategy. A plan given only as a string (such as 'all') has no unit list to
 * draw, so that run is left out.
 */
export function planTable(runs: LoadedRun[], methodOrder: string[]): PlanTable {
  const found = runs
    .map((run) => ({ run, found: planOf(run) }))
    .filter((x): x is { run: LoadedRun; found: NonNullable<ReturnType<typeof planOf>> } => x.found !== null);

  const named = new Set<string>();
  for (const { found: f } of found) for (const u of f.plan.train) named.add(u);
  for (const run of runs) for (const u of Object.keys(run.selection?.scores ?? {})) named.add(u);
  const units = sortUnits(named);
  const layers = visionLayersOf(units);

  // A selection run and the training run that uses its plan both carry the plan: keep one per method and seed.
  const seen = new Set<string>();
  const rows: PlanRow[] = [];
  for (const { run, found: f } of found) {
    const key = `${run.method}\u0000${run.seed}`;
    if (seen.has(key)) continue;
    seen.add(key);

    const train = new Set(f.plan.train);
    const states = units.map((unit): UnitState => {
      const m = /^vision\.block\.(\d+)$/.exec(unit);
      if (m && f.plan.truncate > 0 && Number(m[1]) >= layers - f.plan.truncate) return 'cut off';
      return train.has(unit) ? 'trained' : 'frozen';
    });
    rows.push({ method: run.method, seed: run.seed, source: f.source, plan: f.plan, states });
  }

  rows.sort((a, b) => methodOrder.indexOf(a.method) - methodOrder.indexOf(b.method) || (a.seed ?? 0) - (b.seed ?? 0));
  return { units, rows };
}
