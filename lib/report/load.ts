// Loads the finished run records under a runs directory for the report and the notebooks.
// Only folders with complete.json count (see lib/runs/record.ts), so a run that crashed midway
// never shows up as a result. The JSON shapes below are the run-file contracts; the report
// reads them structurally so that it does not depend on the code that writes them.
import fs from 'node:fs';
import path from 'node:path';
import { readJson } from '../util/atomic.ts';
import { listCompleteRuns, type RunKind } from '../runs/record.ts';

/** Per-finding entry of metrics.json. */
export interface FindingMetricsFile {
  auroc: number | null;
  ci: [number, number] | null;
  ap: number | null;
  positives: number;
  negatives: number;
}

/** metrics.json: AUROC on one split with bootstrap confidence intervals over patients. */
export interface MetricsFile {
  split: string;
  n: number;
  findings: string[];
  perFinding: Record<string, FindingMetricsFile>;
  meanAuroc: number | null;
  meanAurocCi: [number, number] | null;
  definedFindings: number;
  bootstrap?: { samples: number; seed: number; unit: string };
}

/** cost.json: what training cost. Seconds are wall time; FLOPs are the trainer's estimate. */
export interface CostFile {
  trainSeconds: number;
  evalSeconds: number;
  imagesPerSecond: number;
  flops: number;
  trainableParams: number;
  totalParams: number;
  peakTensorBytes: number;
  peakRssBytes: number;
  backend: string;
}

/** forgetting.json: source-domain zero-shot top-1 accuracy before and after fine-tuning. */
export interface ForgettingFile {
  sets: Record<string, { before: number; after: number; drop: number; n: number }>;
  meanDrop: number;
}

/** history.json: one entry per training epoch. */
export interface HistoryFile {
  epochs: Array<{ epoch: number; trainLoss: number; valMeanAuroc: number | null; lr: number; seconds: number }>;
}

/** A freeze plan as selection.json and train configs store it. */
export interface PlanFile {
  train: string[];
  truncate: number;
  lrScale?: Record<string, number>;
}

/** selection.json: a strategy's chosen plan, its per-unit scores and what choosing cost. */
export interface SelectionFile {
  strategy: string;
  plan: PlanFile;
  scores: Record<string, number>;
  cost: { wallSeconds: number; flops: number; imagesSeen: number };
  details?: Record<string, unknown>;
}

/** One finished run folder with the files the report reads; a file the run did not write is null. */
export interface LoadedRun {
  /** Folder name under the runs directory. */
  id: string;
  dir: string;
  kind: RunKind;
  /** Method label set by the study, e.g. 'zero-shot', 'full', 'truncate-2', 'similarity-cka'. */
  method: string;
  seed: number | null;
  config: Record<string, unknown>;
  environment: Record<string, unknown> | null;
  metrics: MetricsFile | null;
  cost: CostFile | null;
  forgetting: ForgettingFile | null;
  history: HistoryFile | null;
  selection: SelectionFile | null;
}

function readOptional<T>(dir: string, file: string): T | null {
  const p = path.join(dir, file);
  return fs.existsSync(p) ? readJson<T>(p) : null;
}

/**
 * Loads every complete run under `runsDir`, sorted by method, then seed, then folder name.
 * Throws when the directory is missing, or when a run's config.json lacks `method`, naming the
 * folder. A malformed JSON file raises an error that names the file.
 */
export function loadRuns(runsDir: string): LoadedRun[] {
  if (!fs.existsSync(runsDir)) {
    throw new Error(`Runs directory not found: ${runsDir}. Run a study first (clipfreeze study) or pass --runs with the folder that contains the run records.`);
  }

  const runs: LoadedRun[] = [];
  for (const { dir, marker } of listCompleteRuns(runsDir)) {
    const config = readJson<Record<string, unknown>>(path.join(dir, 'config.json'));

    // The study's own record describes the whole study and is read separately (see studyConfig).
    if (marker.kind === 'study') continue;

    const method = config.method;
    if (typeof method !== 'string' || method.length === 0) {
      throw new Error(`Run ${dir} has no 'method' in config.json (got ${JSON.stringify(method)}); every run of a study needs a method label such as 'full' or 'zero-shot'.`);
    }
    const seed = typeof config.seed === 'number' ? config.seed : null;

    runs.push({
      id: path.basename(dir),
      dir,
      kind: marker.kind,
      method,
      seed,
      config,
      environment: readOptional(dir, 'environment.json'),
      metrics: readOptional(dir, 'metrics.json'),
      cost: readOptional(dir, 'cost.json'),
      forgetting: readOptional(dir, 'forgetting.json'),
      history: readOptional(dir, 'history.json'),
      selection: readOptional(dir, 'selection.json'),
    });
  }

  linkSelections(runs);
  runs.sort((a, b) => a.method.localeCompare(b.method) || (a.seed ?? 0) - (b.seed ?? 0) || a.id.localeCompare(b.id));
  return runs;
}

/**
 * Gives each select run the method label of the training run that used its plan (config
 * `planFrom`, the select run's folder). A select run's own config.json `method` names the
 * strategy's measure (such as 'mmd'), not the study's method, so without this link its cost
 * and scores would not join the method that trained its plan.
 */
function linkSelections(runs: LoadedRun[]): void {
  const selects = new Map(runs.filter((r) => r.kind === 'select').map((r) => [r.id, r]));
  for (const run of runs) {
    const planFrom = run.config.planFrom;
    if (run.kind !== 'train' || typeof planFrom !== 'string' || planFrom.length === 0) continue;

    const select = selects.get(path.basename(path.resolve(planFrom)));
    if (!select) continue;
    select.method = run.method;
    select.seed = run.seed ?? select.seed;
    selects.delete(select.id);
  }
}

/** Returns the config of the newest complete study record under `runsDir`, or null when there is none. */
export function studyConfig(runsDir: string): Record<string, unknown> | null {
  if (!fs.existsSync(runsDir)) return null;
  const studies = listCompleteRuns(runsDir)
    .filter(({ marker }) => marker.kind === 'study')
    .sort((a, b) => a.marker.finishedAt.localeCompare(b.marker.finishedAt));
  const last = studies.at(-1);
  return last ? readJson<Record<string, unknown>>(path.join(last.dir, 'config.json')) : null;
}
