// Loads the finished run records under a runs directory for the report and the notebooks.
// Only folders with complete.json count (see lib/runs/record.ts), so a run that crashed midway
// never shows up as a result, and a complete folder with a damaged file is skipped and counted.
// The JSON shapes below are the run-file contracts; the report reads them structurally so that
// it does not depend on the code that writes them.
import fs from 'node:fs';
import path from 'node:path';
import { readJson } from '../util/atomic.ts';
import type { CompleteMarker, RunKind } from '../runs/record.ts';
import { moduleLog } from '../util/log.ts';

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

/** cost.json: what training cost. Seconds are wall time, and FLOPs are nominal (computed from layer shapes). */
export interface CostFile {
  trainSeconds: number;
  evalSeconds: number;
  imagesPerSecond: number;
  flops: number;
  trainableParams: number;
  totalParams: number;
  /** Peak bytes held by TF.js tensors during this run, sampled after each micro-batch. */
  peakTensorBytes: number;
  /** Peak resident memory of the whole process, in bytes. Runs in one process share it, because the wasm heap never shrinks. */
  peakRssBytes: number;
  backend: string;
  /** Frozen-prefix outputs read from the activation cache (0 or absent when none were). */
  activationCacheHits?: number;
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

/** A complete run folder that the report left out, and why. */
export interface SkippedRun {
  /** Folder name under the runs directory. */
  id: string;
  dir: string;
  /** Reason for skipping, naming the file: invalid JSON, a missing listed file or no method. */
  problem: string;
}

/** The loaded runs and the complete run folders that could not be read. */
export interface RunSet {
  runs: LoadedRun[];
  skipped: SkippedRun[];
}

const logger = moduleLog('report');

function readOptional<T>(dir: string, file: string): T | null {
  const p = path.join(dir, file);
  return fs.existsSync(p) ? readJson<T>(p) : null;
}

/** Lists the folders under `runsDir` that contain complete.json, sorted by name. */
function completeFolders(runsDir: string): string[] {
  return fs
    .readdirSync(runsDir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && fs.existsSync(path.join(runsDir, entry.name, 'complete.json')))
    .map((entry) => path.join(runsDir, entry.name))
    .sort();
}

/** Reads complete.json and checks that every file it lists exists. Throws naming the file. */
function readMarker(dir: string): CompleteMarker {
  const file = path.join(dir, 'complete.json');
  const marker = readJson<CompleteMarker>(file);
  if (!marker || typeof marker.kind !== 'string' || !Array.isArray(marker.files)) {
    throw new Error(`${file} is not a run marker: expected {kind, runId, finishedAt, files}.`);
  }
  const missing = marker.files.filter((f) => !fs.existsSync(path.join(dir, String(f))));
  if (missing.length > 0) {
    throw new Error(`${file} lists ${missing.join(', ')}, which ${missing.length === 1 ? 'is' : 'are'} missing from the folder.`);
  }
  return marker;
}

/** Reads one complete run folder, or returns null for the study's own record. Throws naming the bad file. */
function readRun(dir: string): LoadedRun | null {
  const marker = readMarker(dir);
  // The study's own record describes the whole study and is read separately (see studyConfig).
  if (marker.kind === 'study') return null;

  const config = readJson<Record<string, unknown>>(path.join(dir, 'config.json'));
  const method = config?.method;
  if (typeof method !== 'string' || method.length === 0) {
    throw new Error(`Run ${dir} has no 'method' in config.json (got ${JSON.stringify(method)}); every run of a study needs a method label such as 'full' or 'zero-shot'.`);
  }

  return {
    id: path.basename(dir),
    dir,
    kind: marker.kind,
    method,
    seed: typeof config.seed === 'number' ? config.seed : null,
    config,
    environment: readOptional(dir, 'environment.json'),
    metrics: readOptional(dir, 'metrics.json'),
    cost: readOptional(dir, 'cost.json'),
    forgetting: readOptional(dir, 'forgetting.json'),
    history: readOptional(dir, 'history.json'),
    selection: readOptional(dir, 'selection.json'),
  };
}

/**
 * Loads every complete run under `runsDir`, sorted by method, then seed, then folder name.
 * A run folder that cannot be read is skipped with a logged warning naming the folder and the
 * problem, so one damaged run does not hide the others. Such problems are invalid JSON, a file
 * that complete.json lists but that is missing, and no `method` in config.json. Throws when
 * the directory is missing.
 */
export function loadRunSet(runsDir: string): RunSet {
  if (!fs.existsSync(runsDir)) {
    throw new Error(`Runs directory not found: ${runsDir}. Run a study first (clipfreeze study) or pass --runs with the folder that contains the run records.`);
  }

  const runs: LoadedRun[] = [];
  const skipped: SkippedRun[] = [];
  for (const dir of completeFolders(runsDir)) {
    try {
      const run = readRun(dir);
      if (run) runs.push(run);
    } catch (error) {
      const problem = error instanceof Error ? error.message : String(error);
      skipped.push({ id: path.basename(dir), dir, problem });
      logger.warn({ run: dir, problem }, 'skipping unreadable run folder');
    }
  }
  if (skipped.length > 0) logger.warn({ skipped: skipped.length, loaded: runs.length }, 'some run folders were skipped; the report counts them in its setup section');

  linkSelections(runs);
  runs.sort((a, b) => a.method.localeCompare(b.method) || (a.seed ?? 0) - (b.seed ?? 0) || a.id.localeCompare(b.id));
  return { runs, skipped };
}

/** Loads every readable complete run under `runsDir`; see loadRunSet, which also returns the skipped folders. */
export function loadRuns(runsDir: string): LoadedRun[] {
  return loadRunSet(runsDir).runs;
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

/**
 * Returns the config of the newest complete study record under `runsDir`, or null when there is
 * none. An unreadable study record is skipped with a logged warning, as loadRunSet skips runs.
 */
export function studyConfig(runsDir: string): Record<string, unknown> | null {
  if (!fs.existsSync(runsDir)) return null;

  const studies: Array<{ finishedAt: string; config: Record<string, unknown> }> = [];
  for (const dir of completeFolders(runsDir)) {
    try {
      const marker = readJson<CompleteMarker>(path.join(dir, 'complete.json'));
      if (marker?.kind !== 'study') continue;
      studies.push({ finishedAt: String(marker.finishedAt ?? ''), config: readJson<Record<string, unknown>>(path.join(dir, 'config.json')) });
    } catch (error) {
      logger.warn({ run: dir, problem: error instanceof Error ? error.message : String(error) }, 'skipping unreadable study record');
    }
  }
  studies.sort((a, b) => a.finishedAt.localeCompare(b.finishedAt));
  return studies.at(-1)?.config ?? null;
}
