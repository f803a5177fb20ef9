// Bootstrap confidence intervals for per-finding and mean AUROC. The resampling unit is the
// patient: a replicate draws patients with replacement and keeps all images of each drawn
// patient, because images of one patient are correlated and resampling images would give
// intervals that are too narrow. Intervals are percentile intervals (2.5 and 97.5 percentiles,
// linear interpolation as numpy.percentile's default).
import { aurocRanked, rankScores, type RankedScores } from './auroc.ts';
import { createRng, randomInt } from '../util/rng.ts';
import { createProgress } from '../util/progress.ts';

// Work (images x findings x replicates) from which a progress bar is shown. The full
// ChestX-ray14 test split with 1000 replicates is 3.6e8 and took 11 s on a 2-core machine.
const PROGRESS_FROM_WORK = 2e7;

/**
 * Maximum number of bootstrap replicates. At the rate measured above (1000 replicates of the full
 * test split in 11 s), this many take about 20 minutes, and a mistyped 1e9 would run for months.
 */
export const MAX_BOOTSTRAP_SAMPLES = 100_000;

/** Throws when `samples` is not an integer in [0, MAX_BOOTSTRAP_SAMPLES]; `name` is the option to name. */
export function checkBootstrapSamples(samples: number, name = 'bootstrap'): void {
  if (!Number.isInteger(samples) || samples < 0) {
    throw new Error(`Invalid ${name} ${samples}: use a non-negative integer number of replicates such as 1000.`);
  }
  if (samples > MAX_BOOTSTRAP_SAMPLES) {
    throw new Error(`Invalid ${name} ${samples}: the maximum is ${MAX_BOOTSTRAP_SAMPLES} replicates. Use 1000 to 10000.`);
  }
}

export interface BootstrapOptions {
  /** Number of replicates. */
  samples: number;
  seed: number;
  /** Interval coverage; 0.95 gives the 2.5 and 97.5 percentiles. */
  level?: number;
}

export interface BootstrapResult {
  /** Interval per finding; null when fewer than two replicates defined the finding. */
  ci: Array<[number, number] | null>;
  meanCi: [number, number] | null;
  /** Replicates skipped per finding because only one class was drawn. */
  skipped: number[];
  /** Replicates in which the mean covered fewer findings than the point estimate. */
  meanPartial: number;
  /** Replicates skipped for the mean because no finding was defined. */
  meanSkipped: number;
}

/**
 * Bootstraps AUROC over patients. `labels[f]` and `scores[f]` are the 0/1 labels and scores of
 * finding f for all n images, and `patients[i]` is the patient of image i.
 *
 * A replicate's mean AUROC averages the findings defined both in that replicate and in the full
 * data. A replicate that draws no positive (or no negative) of a finding is skipped for that
 * finding and counted in `skipped`.
 */
export function bootstrapAuroc(labels: ArrayLike<number>[], scores: ArrayLike<number>[], patients: string[], options: BootstrapOptions): BootstrapResult {
  const findings = labels.length;
  const n = patients.length;
  const level = options.level ?? 0.95;
  checkBootstrapSamples(options.samples, 'bootstrap sample count');

  // Group image indices by patient.
  const patientIndex = new Map<string, number>();
  const imagePatient = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let p = patientIndex.get(patients[i]);
    if (p === undefined) {
      p = patientIndex.size;
      patientIndex.set(patients[i], p);
    }
    imagePatient[i] = p;
  }
  const patientCount = patientIndex.size;

  // Sort each finding's scores once; replicates only change the weights.
  const ranked: RankedScores[] = scores.map((s) => rankScores(s));
  const definedInFull = ranked.map((r, f) => aurocRanked(r, labels[f]) !== null);

  const rng = createRng(options.seed);
  const draws = new Int32Array(patientCount);
  const weights = new Float64Array(n);
  const values: number[][] = Array.from({ length: findings }, () => []);
  const means: number[] = [];
  const skipped = new Array<number>(findings).fill(0);
  let meanPartial = 0;
  let meanSkipped = 0;

  const progress = n * findings * options.samples >= PROGRESS_FROM_WORK ? createProgress('Bootstrap', options.samples) : null;
  for (let b = 0; b < options.samples; b++) {
    progress?.tick(1);

    // Draw patientCount patients with replacement; an image's weight is its patient's count.
    draws.fill(0);
    for (let k = 0; k < patientCount; k++) draws[randomInt(rng, patientCount)]++;
    for (let i = 0; i < n; i++) weights[i] = draws[imagePatient[i]];

    let sum = 0;
    let defined = 0;
    let expected = 0;
    for (let f = 0; f < findings; f++) {
      const value = aurocRanked(ranked[f], labels[f], weights);
      if (value === null) {
        skipped[f]++;
      } else {
        values[f].push(value);
      }
      if (!definedInFull[f]) continue;
      expected++;
      if (value !== null) {
        sum += value;
        defined++;
      }
    }

    if (defined === 0) {
      meanSkipped++;
      continue;
    }
    if (defined < expected) meanPartial++;
    means.push(sum / defined);
  }
  progress?.stop();

  const ci = values.map((v) => percentileInterval(v, level));
  return { ci, meanCi: percentileInterval(means, level), skipped, meanPartial, meanSkipped };
}

/** Returns the central `level` percentile interval of `values`, or null for fewer than two values. */
export function percentileInterval(values: number[], level: number): [number, number] | null {
  if (values.length < 2) return null;
  const sorted = Float64Array.from(values).sort();
  const tail = (1 - level) / 2;
  return [percentile(sorted, tail), percentile(sorted, 1 - tail)];
}

/** Returns the q-quantile (0..1) of sorted values with linear interpolation, like numpy.percentile. */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  const position = (sorted.length - 1) * q;
  const lower = Math.floor(position);
  const upper = Math.min(lower + 1, sorted.length - 1);
  const fraction = position - lower;
  return sorted[lower] + (sorted[upper] - sorted[lower]) * fraction;
}
