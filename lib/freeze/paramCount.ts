// Parameter counts per layer unit and per freeze plan, printed as a table before training.
import { cutOffBlocks, type FreezePlan } from './plan.ts';
import { layerUnits, unitParamCount, type ClipGeometry } from './units.ts';

export type UnitState = 'train' | 'frozen' | 'cut';

export interface UnitCountRow {
  unit: string;
  params: number;
  state: UnitState;
}

export interface PlanParamCounts {
  rows: UnitCountRow[];
  /** Parameters that receive updates. */
  trainable: number;
  /** Parameters of the model as used by the plan: image tower after truncation, text tower, logit scale, task head. */
  total: number;
  /** Parameters of the cut-off blocks (not part of `total`). */
  cut: number;
}

/**
 * Counts parameters per unit and classifies each unit as trained, frozen or cut off.
 * `sizeOf` takes sizes from a loaded checkpoint (see `unitParamCount`).
 */
export function countPlanParams(
  plan: FreezePlan,
  config: ClipGeometry,
  findings?: number,
  sizeOf?: (param: string) => number | undefined,
): PlanParamCounts {
  const trained = new Set(plan.train);
  const cut = new Set(cutOffBlocks(config, plan.truncate));
  const rows: UnitCountRow[] = [];
  let trainable = 0;
  let total = 0;
  let cutParams = 0;
  for (const unit of layerUnits(config, findings)) {
    // The task head is created by the trainer, so a checkpoint never contains it.
    const params = unit.name === 'head' ? unitParamCount(unit) : unitParamCount(unit, sizeOf);
    const state: UnitState = cut.has(unit.name) ? 'cut' : trained.has(unit.name) ? 'train' : 'frozen';
    rows.push({ unit: unit.name, params, state });
    if (state === 'cut') cutParams += params;
    else total += params;
    if (state === 'train') trainable += params;
  }
  return { rows, trainable, total, cut: cutParams };
}

/** Formats the counts as a fixed-width table with one row per unit and a summary line. */
export function formatParamTable(counts: PlanParamCounts): string {
  const width = Math.max(...counts.rows.map((r) => r.unit.length), 'unit'.length);
  const lines = [`${'unit'.padEnd(width)}  ${'params'.padStart(12)}  state`];
  for (const row of counts.rows) {
    lines.push(`${row.unit.padEnd(width)}  ${row.params.toLocaleString('en-US').padStart(12)}  ${row.state}`);
  }
  const percent = counts.total ? ((100 * counts.trainable) / counts.total).toFixed(2) : '0';
  lines.push(
    `trainable ${counts.trainable.toLocaleString('en-US')} of ${counts.total.toLocaleString('en-US')} (${percent}%)` +
      (counts.cut ? `; cut off ${counts.cut.toLocaleString('en-US')}` : ''),
  );
  return lines.join('\n');
}
