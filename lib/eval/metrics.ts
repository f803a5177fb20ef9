// Evaluation of a predictions table: per-finding AUROC and average precision, mean AUROC over
// the findings where AUROC is defined, and patient-level bootstrap confidence intervals.
// The result is the content of a run's metrics.json.
import { aurocRanked, rankScores } from './auroc.ts';
import { averagePrecisionRanked } from './averagePrecision.ts';
import { bootstrapAuroc } from './bootstrap.ts';
import type { Predictions } from './predictions.ts';

export interface FindingMetrics {
  /** null when only one class is present. */
  auroc: number | null;
  /** 95% percentile bootstrap interval; null without bootstrap or when undefined. */
  ci: [number, number] | null;
  ap: number | null;
  positives: number;
  negatives: number;
}

export interface MetricsJson {
  /** The split of the rows, or 'mixed' when they come from several. */
  split: string;
  /** Number of images. */
  n: number;
  /** Number of distinct patients. */
  patients: number;
  findings: string[];
  perFinding: Record<string, FindingMetrics>;
  /** Mean AUROC over the findings where it is defined; null when none is. */
  meanAuroc: number | null;
  meanAurocCi: [number, number] | null;
  /** Number of findings in the mean. */
  definedFindings: number;
  /** Mean average precision over the same findings as meanAuroc. */
  meanAp: number | null;
  bootstrap: {
    samples: number;
    seed: number;
    unit: 'patient';
    /** Replicates skipped per finding because only one class was drawn. */
    skipped: Record<string, number>;
    /** Replicates whose mean covered fewer findings than meanAuroc does. */
    meanPartial: number;
  };
}

export interface EvaluateOptions {
  /** Bootstrap replicates; 0 turns the intervals off. Default 1000. */
  bootstrap?: number;
  /** Bootstrap seed. Default 0. */
  seed?: number;
}

export const DEFAULT_BOOTSTRAP_SAMPLES = 1000;

/** Evaluates predictions into the metrics.json structure. */
export function evaluatePredictions(predictions: Predictions, options: EvaluateOptions = {}): MetricsJson {
  const samples = options.bootstrap ?? DEFAULT_BOOTSTRAP_SAMPLES;
  const seed = options.seed ?? 0;
  const { findings, rows } = predictions;
  if (rows.length === 0) throw new Error('Cannot evaluate predictions with no rows.');

  // Column-major copies: one label and one score vector per finding.
  const labels = findings.map((_, f) => Uint8Array.from(rows, (row) => row.labels[f]));
  const scores = findings.map((_, f) => Float64Array.from(rows, (row) => row.scores[f]));
  const patients = rows.map((row) => row.patient);

  const perFinding: Record<string, FindingMetrics> = {};
  let aurocSum = 0;
  let apSum = 0;
  let defined = 0;
  findings.forEach((finding, f) => {
    const ranked = rankScores(scores[f]);
    const auroc = aurocRanked(ranked, labels[f]);
    const ap = averagePrecisionRanked(ranked, labels[f]);
    const positives = labels[f].reduce((a, b) => a + b, 0);
    perFinding[finding] = { auroc, ci: null, ap, positives, negatives: rows.length - positives };
    if (auroc !== null) {
      aurocSum += auroc;
      apSum += ap ?? 0;
      defined++;
    }
  });

  const bootstrap = samples > 0 ? bootstrapAuroc(labels, scores, patients, { samples, seed }) : null;
  const skipped: Record<string, number> = {};
  findings.forEach((finding, f) => {
    skipped[finding] = bootstrap ? bootstrap.skipped[f] : 0;
    if (bootstrap && perFinding[finding].auroc !== null) perFinding[finding].ci = bootstrap.ci[f];
  });

  const splits = new Set(rows.map((row) => row.split));
  return {
    split: splits.size === 1 ? rows[0].split : 'mixed',
    n: rows.length,
    patients: new Set(patients).size,
    findings,
    perFinding,
    meanAuroc: defined > 0 ? aurocSum / defined : null,
    meanAurocCi: defined > 0 && bootstrap ? bootstrap.meanCi : null,
    definedFindings: defined,
    meanAp: defined > 0 ? apSum / defined : null,
    bootstrap: { samples, seed, unit: 'patient', skipped, meanPartial: bootstrap ? bootstrap.meanPartial : 0 },
  };
}
