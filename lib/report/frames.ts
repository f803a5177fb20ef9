// danfojs DataFrames of the report's tables, for notebooks (`frame.print()`, `frame.describe()`,
// groupby) and for CSV export (`dfd.toCSV(frame)`). Missing values are NaN, as danfojs expects.
import * as dfd from 'danfojs-node';
import type { LoadedRun } from './load.ts';
import type { MethodSummary } from './summary.ts';

const nan = (v: number | null | undefined) => (typeof v === 'number' ? v : Number.NaN);

/** One row per run with metrics: method, seed, test mean AUROC, forgetting and cost. */
export function runsFrame(runs: LoadedRun[]): dfd.DataFrame {
  const rows = runs
    .filter((r) => r.metrics)
    .map((r) => ({
      method: r.method,
      seed: nan(r.seed),
      meanAuroc: nan(r.metrics!.meanAuroc),
      forgettingDrop: nan(r.forgetting?.meanDrop),
      trainableParams: nan(r.cost?.trainableParams),
      flops: nan(r.cost?.flops),
      trainSeconds: nan(r.cost?.trainSeconds),
    }));
  return new dfd.DataFrame(rows);
}

/** One row per method: the summary table of the report, with numbers unformatted. */
export function summaryFrame(summaries: MethodSummary[]): dfd.DataFrame {
  return new dfd.DataFrame(
    summaries.map((s) => ({
      method: s.method,
      seeds: s.seeds.length,
      meanAuroc: nan(s.meanAuroc.mean),
      sdAuroc: nan(s.meanAuroc.sd),
      ciLow: nan(s.meanAurocCi?.[0]),
      ciHigh: nan(s.meanAurocCi?.[1]),
      forgettingDrop: nan(s.forgettingDrop.mean),
      trainableParams: nan(s.trainableParams.mean),
      flops: nan(s.flops.mean),
      wallSeconds: nan(s.wallSeconds.mean),
      peakTensorBytes: nan(s.peakTensorBytes.mean),
    })),
  );
}

/** Test AUROC per finding: one row per method, one column per finding (mean over seeds). */
export function perFindingFrame(summaries: MethodSummary[], findings: string[]): dfd.DataFrame {
  return new dfd.DataFrame(
    summaries.map((s) => {
      const row: Record<string, string | number> = { method: s.method };
      for (const f of findings) row[f] = nan(s.perFinding[f]?.mean);
      return row;
    }),
  );
}

/** Returns the rows of `frame` as objects (column name to value), e.g. for tableHtml. */
export function frameRows(frame: dfd.DataFrame): Array<Record<string, unknown>> {
  return dfd.toJSON(frame, { format: 'column' }) as Array<Record<string, unknown>>;
}
