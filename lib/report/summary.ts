// Per-method summaries: the runs of one method (one per seed) reduced to the numbers the report
// compares. A method's AUROC comes from its runs with metrics.json (zero-shot or train runs);
// its cost adds the selection run (selection.json) to the training run of the same seed.
import type { LoadedRun } from './load.ts';

/** Mean, sample standard deviation (n - 1), minimum and maximum over seeds; null where no seed has a value. */
export interface Spread {
  mean: number | null;
  sd: number | null;
  min: number | null;
  max: number | null;
  n: number;
}

export interface MethodSummary {
  method: string;
  /** 'zero-shot', 'train' or 'select+train': how the method's models came about. */
  kind: string;
  seeds: number[];
  /** Test mean AUROC over seeds. */
  meanAuroc: Spread;
  /** Bootstrap 95% CI of the mean AUROC, with each bound averaged over seeds. */
  meanAurocCi: [number, number] | null;
  /** Test AUROC per finding, averaged over seeds. */
  perFinding: Record<string, Spread>;
  /** Mean source-domain accuracy drop (before minus after fine-tuning). */
  forgettingDrop: Spread;
  trainableParams: Spread;
  /** Training FLOPs plus the selection's FLOPs, per seed. */
  flops: Spread;
  /** Training plus selection wall time in seconds, per seed. */
  wallSeconds: Spread;
  selectionFlops: Spread;
  /** Highest TF.js tensor memory per run, in bytes. */
  peakTensorBytes: Spread;
  /** Peak resident memory of the process that ran each run, in bytes (process-wide, see CostFile). */
  peakRssBytes: Spread;
  /** Number of evaluated runs that read frozen-prefix activations from the activation cache. */
  cachedRuns: number;
}

/** Computes the spread of the finite values in `values`. */
export function spread(values: Array<number | null | undefined>): Spread {
  const xs = values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  if (xs.length === 0) return { mean: null, sd: null, min: null, max: null, n: 0 };

  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (xs.length - 1)) : null;
  return { mean, sd, min: Math.min(...xs), max: Math.max(...xs), n: xs.length };
}

/** Orders methods the way a reader compares them: baselines first, then fixed plans, then strategies. */
export function methodRank(method: string, hasSelection: boolean): number {
  if (method === 'zero-shot') return 0;
  if (method === 'full') return 1;
  if (method.startsWith('truncate')) return 2;
  return hasSelection ? 4 : 3;
}

/** Returns the method labels of `runs` in report order. */
export function methodOrder(runs: LoadedRun[]): string[] {
  const withSelection = new Set(runs.filter((r) => r.selection).map((r) => r.method));
  const methods = [...new Set(runs.map((r) => r.method))];
  return methods.sort(
    (a, b) =>
      methodRank(a, withSelection.has(a)) - methodRank(b, withSelection.has(b)) ||
      a.localeCompare(b, 'en', { numeric: true }),
  );
}

/** Returns every finding that any run's metrics.json lists, in first-seen order. */
export function findingsOf(runs: LoadedRun[]): string[] {
  const findings: string[] = [];
  for (const run of runs) {
    for (const f of run.metrics?.findings ?? []) if (!findings.includes(f)) findings.push(f);
  }
  return findings;
}

function seedKey(run: LoadedRun): string {
  return run.seed === null ? 'none' : String(run.seed);
}

/** Summarises every method that has evaluated runs (metrics.json) over its seeds, in report order. */
export function summarizeMethods(runs: LoadedRun[]): MethodSummary[] {
  const findings = findingsOf(runs);

  const evaluatedMethods = methodOrder(runs).filter((method) => runs.some((r) => r.method === method && r.metrics));
  return evaluatedMethods.map((method) => {
    const ofMethod = runs.filter((r) => r.method === method);
    const evaluated = ofMethod.filter((r) => r.metrics);
    const selections = new Map(ofMethod.filter((r) => r.selection).map((r) => [seedKey(r), r.selection!]));

    // Cost per seed: the evaluated run's training plus the selection run of the same seed.
    const flops = evaluated.map((r) => (r.cost?.flops ?? 0) + (selections.get(seedKey(r))?.cost.flops ?? 0));
    const wall = evaluated.map((r) => (r.cost?.trainSeconds ?? 0) + (selections.get(seedKey(r))?.cost.wallSeconds ?? 0));

    const cis = evaluated.map((r) => r.metrics!.meanAurocCi).filter((ci): ci is [number, number] => Array.isArray(ci));
    const meanAurocCi: [number, number] | null = cis.length
      ? [spread(cis.map((c) => c[0])).mean!, spread(cis.map((c) => c[1])).mean!]
      : null;

    const perFinding: Record<string, Spread> = {};
    for (const f of findings) perFinding[f] = spread(evaluated.map((r) => r.metrics!.perFinding[f]?.auroc));

    let kind = selections.size ? 'select+train' : 'train';
    if (ofMethod.every((r) => r.kind === 'zero-shot')) kind = 'zero-shot';
    return {
      method,
      kind,
      seeds: [...new Set(ofMethod.map((r) => r.seed).filter((s): s is number => s !== null))].sort((a, b) => a - b),
      meanAuroc: spread(evaluated.map((r) => r.metrics!.meanAuroc)),
      meanAurocCi,
      perFinding,
      // A zero-shot model is the source model itself, so it forgets nothing even without forgetting.json.
      forgettingDrop: spread(evaluated.map((r) => r.forgetting?.meanDrop ?? (r.kind === 'zero-shot' ? 0 : null))),
      trainableParams: spread(evaluated.map((r) => r.cost?.trainableParams ?? (r.kind === 'zero-shot' ? 0 : null))),
      flops: spread(flops),
      wallSeconds: spread(wall),
      selectionFlops: spread([...selections.values()].map((s) => s.cost.flops)),
      peakTensorBytes: spread(evaluated.map((r) => r.cost?.peakTensorBytes)),
      peakRssBytes: spread(evaluated.map((r) => r.cost?.peakRssBytes)),
      cachedRuns: evaluated.filter((r) => (r.cost?.activationCacheHits ?? 0) > 0).length,
    };
  });
}

/**
 * Returns the indices of the points on the Pareto front for maximising `y` at minimum `x`,
 * sorted by increasing `x`. A point is on the front when no other point has x <= its x and
 * y >= its y with one of the two strict. Points with a non-finite coordinate are ignored.
 */
export function paretoFront(points: Array<{ x: number | null; y: number | null }>): number[] {
  const finite = points
    .map((p, i) => ({ x: p.x, y: p.y, i }))
    .filter((p): p is { x: number; y: number; i: number } => Number.isFinite(p.x) && Number.isFinite(p.y))
    .sort((a, b) => a.x - b.x || b.y - a.y);

  const front: number[] = [];
  let bestY = -Infinity;
  for (const p of finite) {
    if (p.y > bestY) {
      front.push(p.i);
      bestY = p.y;
    }
  }
  return front;
}
