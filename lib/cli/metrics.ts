// `clipfreeze metrics`: scores any predictions.csv (from clipfreeze or another tool) with the
// same AUROC, average precision and patient bootstrap as clipfreeze's own runs. The metrics
// JSON goes to stdout (and to --out), and a readable table goes to stderr.
import { Command, InvalidArgumentError } from 'commander';
import { SPLITS, type Split } from '../data/dataset.ts';
import { MAX_BOOTSTRAP_SAMPLES } from '../eval/bootstrap.ts';
import { DEFAULT_BOOTSTRAP_SAMPLES, evaluatePredictions, type MetricsJson } from '../eval/metrics.ts';
import { readPredictions } from '../eval/predictions.ts';
import { writeJsonAtomic } from '../util/atomic.ts';

export interface MetricsCommandOptions {
  predictions: string;
  bootstrap: number;
  seed: number;
  split?: Split;
  out?: string;
}

/** Reads a predictions file, keeps the requested split and evaluates it. */
export function runMetrics(options: MetricsCommandOptions): MetricsJson {
  const predictions = readPredictions(options.predictions);
  if (predictions.rows.length === 0) throw new Error(`${options.predictions} has a header but no prediction rows. Write one row per image.`);
  if (options.split) {
    predictions.rows = predictions.rows.filter((row) => row.split === options.split);
    if (predictions.rows.length === 0) throw new Error(`${options.predictions} has no rows with split '${options.split}'.`);
  }

  const metrics = evaluatePredictions(predictions, { bootstrap: options.bootstrap, seed: options.seed });
  if (options.out) writeJsonAtomic(options.out, metrics);
  return metrics;
}

/** Formats metrics as a fixed-width table: one row per finding, then the mean. */
export function formatMetricsTable(metrics: MetricsJson): string {
  const number = (value: number | null) => (value === null ? '  n/a' : value.toFixed(3));
  const interval = (ci: [number, number] | null) => (ci ? `[${ci[0].toFixed(3)}, ${ci[1].toFixed(3)}]` : '');
  const width = Math.max(18, ...metrics.findings.map((f) => f.length));

  const lines = [
    `split ${metrics.split}: ${metrics.n} images, ${metrics.patients} patients, bootstrap ${metrics.bootstrap.samples} x patients (seed ${metrics.bootstrap.seed})`,
    `${'finding'.padEnd(width)}  AUROC  95% CI            AP     pos    neg`,
  ];
  for (const finding of metrics.findings) {
    const m = metrics.perFinding[finding];
    lines.push(
      `${finding.padEnd(width)}  ${number(m.auroc)}  ${interval(m.ci).padEnd(16)}  ${number(m.ap)}  ${String(m.positives).padStart(5)}  ${String(m.negatives).padStart(5)}`,
    );
  }
  const mean = `mean (${metrics.definedFindings} of ${metrics.findings.length})`;
  lines.push(`${mean.padEnd(width)}  ${number(metrics.meanAuroc)}  ${interval(metrics.meanAurocCi).padEnd(16)}  ${number(metrics.meanAp)}`);

  // Replicates that drew only one class of a finding do not enter its interval.
  const skipped = Object.entries(metrics.bootstrap.skipped).filter(([, count]) => count > 0);
  if (skipped.length > 0) {
    lines.push(`bootstrap replicates skipped for lack of both classes: ${skipped.map(([f, count]) => `${f} ${count}`).join(', ')}`);
  }
  return lines.join('\n');
}

function parseBootstrap(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`expected a non-negative integer, got '${value}'.`);
  if (n > MAX_BOOTSTRAP_SAMPLES) throw new InvalidArgumentError(`${value} exceeds the maximum of ${MAX_BOOTSTRAP_SAMPLES} replicates.`);
  return n;
}

function parseSeed(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`expected an integer, got '${value}'.`);
  return n;
}

function parseSplit(value: string): Split {
  if (!(SPLITS as readonly string[]).includes(value)) throw new InvalidArgumentError(`expected one of ${SPLITS.join(', ')}, got '${value}'.`);
  return value as Split;
}

export function register(program: Command): void {
  program
    .command('metrics')
    .description('Evaluate a predictions.csv: per-finding and mean AUROC with patient bootstrap intervals, and average precision.')
    .requiredOption('--predictions <file>', 'predictions CSV: image,patient,split,label:<Finding>...,score:<Finding>...')
    .option('--bootstrap <n>', `bootstrap replicates, resampling patients, at most ${MAX_BOOTSTRAP_SAMPLES}; 0 turns intervals off`, parseBootstrap, DEFAULT_BOOTSTRAP_SAMPLES)
    .option('--seed <s>', 'bootstrap seed', parseSeed, 0)
    .option('--split <split>', 'evaluate only rows of this split (train, val or test)', parseSplit)
    .option('--out <file>', 'also write the metrics JSON to this file (atomically)')
    .action((options: MetricsCommandOptions) => {
      const metrics = runMetrics(options);
      process.stderr.write(formatMetricsTable(metrics) + '\n');
      process.stdout.write(JSON.stringify(metrics, null, 2) + '\n');
    });
}
