// A 'select' run: runs one layer-selection strategy and records its result beside the training
// runs, so that `clipfreeze train --plan-from RUN` trains the selected plan.
//
//   runs/<run-id>/config.json       kind 'select', method, strategy, settings, seed, checkpoint, dataset
//   runs/<run-id>/environment.json
//   runs/<run-id>/selection.json    {strategy, plan, scores, cost, details}
//   runs/<run-id>/trials.jsonl      search only: every finished trial, kept across restarts
//   runs/<run-id>/trials/           search only: the trials' training run records
//   runs/<run-id>/run.log
//   runs/<run-id>/complete.json     written last
import fs from 'node:fs';
import path from 'node:path';
import { ClipModel } from '../clip/model.ts';
import type { Split } from '../data/dataset.ts';
import { openDataset, type DatasetName } from '../data/registry.ts';
import { acquireRunLock } from '../runs/lock.ts';
import { describeEnvironment, RunRecord, runIdFor } from '../runs/record.ts';
import { moduleLog } from '../util/log.ts';
import { GRADIENT_METHODS, gradientSelect, type GradientMethod } from './gradient.ts';
import type { SearchBudget, TrialEvaluator } from './search.ts';
import { searchSelect, type SearchSelectSettings } from './searchSelect.ts';
import { MASK_SHAPES, type MaskShape } from './searchSpace.ts';
import { SIMILARITY_METHODS, similaritySelect, type SimilarityMethod } from './similarity.ts';
import { checkpointSha256, dataFingerprint } from '../study/fingerprint.ts';
import type { TrialExecutor } from '../study/trial.ts';
import { executorTrialEvaluator, localTrialEvaluator } from './trialEvaluator.ts';
import type { SelectionJson, SelectionResult, StrategyName } from './types.ts';

const logger = moduleLog('select');

export const STRATEGIES: readonly StrategyName[] = ['similarity', 'gradient', 'search'];

export interface SelectConfig {
  strategy: StrategyName;
  /** Strategy method: similarity mmd|frechet|cka, gradient rgn|autofreeze, search any|window|prefix (mask shape). */
  method: string;
  checkpoint: string;
  dataset: DatasetName;
  data: string;
  /** Options of the dataset opener, as in the train config's datasetOptions (absent = none). */
  datasetOptions?: Record<string, unknown>;
  /** Folder-per-class source-domain images (similarity with mmd or frechet). */
  source: string | null;
  /** Units to train (similarity, gradient). */
  units: number | null;
  seed: number;
  /** Images per split (null = the whole split). */
  limit: Record<Split, number | null>;
  /** Search budget (search only). */
  budget: SearchBudget | null;
  /** Strategy-specific settings passed through, e.g. batches, batchSize, adaptSteps, truncations, train. */
  settings: Record<string, unknown>;
  runs: string;
}

export const DEFAULT_METHODS: Record<StrategyName, string> = { similarity: 'mmd', gradient: 'rgn', search: 'any' };

export const DEFAULT_BUDGET: SearchBudget = { unit: 'epochs', total: 24, minBudget: 1, maxBudget: 4, eta: 2 };

export interface SelectRunResult {
  runDir: string;
  runId: string;
  selection: SelectionJson;
}

export interface SelectRunOptions {
  /** Replaces the in-process trial evaluator of the search (another executor, or a test objective). */
  evaluate?: TrialEvaluator;
  /** Trials of one rung that run at the same time (search only, default 1). */
  concurrency?: number;
  /** Runs the search trials through this executor (for example BullMQ workers) instead of in this process. */
  executor?: TrialExecutor;
}

/**
 * Runs the strategy of `config` and writes the select run record. A complete record with the
 * same config is returned as it is; an incomplete search resumes from its trials file.
 */
export async function runSelect(config: SelectConfig, options: SelectRunOptions = {}): Promise<SelectRunResult> {
  validateSelectConfig(config);
  const { model, checkpoint } = await ClipModel.load(config.checkpoint);
  const label = `${config.strategy}-${config.method}`;
  // The run id hashes everything that changes the result, so not the runs folder. Empty dataset
  // options are left out, so select runs recorded before the option existed keep their ids.
  const { runs: _runsDir, datasetOptions, ...settings } = config;
  const hasDatasetOptions = datasetOptions !== undefined && Object.keys(datasetOptions).length > 0;
  const identity = { ...settings, ...(hasDatasetOptions ? { datasetOptions } : {}), checkpointSha256: checkpoint.sha256 };
  const record = new RunRecord(config.runs, runIdFor('select', identity, label));

  if (record.isComplete()) {
    logger.info(`Select run ${record.runId} is already complete; returning its selection.`);
    model.dispose();
    return { runDir: record.dir, runId: record.runId, selection: record.readJson<SelectionJson>('selection.json') };
  }

  let releaseLock: () => void;
  try {
    releaseLock = acquireRunLock(record.dir, record.runId);
  } catch (error) {
    model.dispose();
    throw error;
  }

  try {
    record.writeJson('config.json', {
      kind: 'select',
      method: label,
      strategy: config.strategy,
      strategyMethod: config.method,
      seed: config.seed,
      checkpoint: path.resolve(config.checkpoint),
      checkpointSha256: checkpoint.sha256,
      dataset: config.dataset,
      data: path.resolve(config.data),
      datasetOptions: datasetOptions ?? {},
      source: config.source ? path.resolve(config.source) : null,
      units: config.units,
      limit: config.limit,
      budget: config.budget,
      settings: config.settings,
    });
    record.writeJson('environment.json', describeEnvironment({ checkpointSha256: checkpoint.sha256 }));
    record.appendLog(`start: select ${label}, seed ${config.seed}, checkpoint ${checkpoint.sha256.slice(0, 12)}`);

    const dataset = await openDataset(config.dataset, config.data, { ...config.datasetOptions, limit: limitOf(config) });
    const result = await runStrategy(config, { model, checkpoint }, dataset, record, options);
    const selection: SelectionJson = { strategy: config.strategy, ...result };
    record.writeJson('selection.json', selection);
    record.appendLog(`selected: train ${selection.plan.train.join(',')}, truncate ${selection.plan.truncate}; ${selection.cost.wallSeconds.toFixed(1)} s`);

    const files = ['config.json', 'environment.json', 'selection.json', 'run.log'];
    if (record.has('trials.jsonl')) files.push('trials.jsonl');
    record.markComplete('select', files);
    logger.info(`Select run ${record.runId} complete: train ${selection.plan.train.join(', ')}, truncate ${selection.plan.truncate}`);
    return { runDir: record.dir, runId: record.runId, selection };
  } catch (err) {
    record.appendLog(`failed: ${(err as Error).message}`);
    throw err;
  } finally {
    releaseLock();
    model.dispose();
  }
}

async function runStrategy(
  config: SelectConfig,
  loaded: Awaited<ReturnType<typeof ClipModel.load>>,
  dataset: Awaited<ReturnType<typeof openDataset>>,
  record: RunRecord,
  options: SelectRunOptions,
): Promise<SelectionResult> {
  const s = config.settings;
  const units = config.units ?? undefined;
  const tokenizerDir = fs.existsSync(loaded.checkpoint.dir) ? loaded.checkpoint.dir : undefined;

  if (config.strategy === 'similarity') {
    return similaritySelect(loaded.model, dataset, {
      method: config.method as SimilarityMethod,
      units,
      sourceDir: config.source ?? undefined,
      seed: config.seed,
      tokenizerDir,
      ...(s as object),
    });
  }
  if (config.strategy === 'gradient') {
    return gradientSelect(loaded.model, dataset, { method: config.method as GradientMethod, units, seed: config.seed, tokenizerDir, ...(s as object) });
  }
  const base = {
    ...((s.train as object | undefined) ?? {}),
    checkpoint: config.checkpoint,
    data: config.data,
    dataset: config.dataset,
    ...(config.datasetOptions && Object.keys(config.datasetOptions).length > 0 ? { datasetOptions: config.datasetOptions } : {}),
    limit: config.limit,
  };
  const trainImages = dataset.samples('train').length;
  const evaluate =
    options.evaluate ??
    (options.executor
      ? executorTrialEvaluator(options.executor, { base, trainImages, checkpointSha256: checkpointSha256(config.checkpoint), dataFingerprint: dataFingerprint(config.data) })
      : localTrialEvaluator({ base, runsDir: record.path('trials'), trainImages, model: loaded }));
  return searchSelect(loaded.model, dataset, {
    shape: config.method as MaskShape,
    budget: config.budget ?? DEFAULT_BUDGET,
    seed: config.seed,
    evaluate,
    trialsFile: record.path('trials.jsonl'),
    concurrency: options.concurrency,
    candidates: s.candidates as string[] | undefined,
    truncations: s.truncations as number[] | undefined,
    surrogate: s.surrogate as SearchSelectSettings['surrogate'],
  });
}

function limitOf(config: SelectConfig): Partial<Record<Split, number>> {
  const out: Partial<Record<Split, number>> = {};
  for (const split of ['train', 'val', 'test'] as const) if (config.limit[split] !== null) out[split] = config.limit[split]!;
  return out;
}

export function validateSelectConfig(config: SelectConfig): void {
  if (!STRATEGIES.includes(config.strategy)) {
    throw new Error(`Invalid strategy '${config.strategy}'. Allowed values: ${STRATEGIES.join(', ')}.`);
  }
  const methods: Record<StrategyName, readonly string[]> = { similarity: SIMILARITY_METHODS, gradient: GRADIENT_METHODS, search: MASK_SHAPES };
  if (!methods[config.strategy].includes(config.method)) {
    throw new Error(`Invalid method '${config.method}' for strategy '${config.strategy}'. Allowed values: ${methods[config.strategy].join(', ')}.`);
  }
  if (config.units !== null && (!Number.isInteger(config.units) || config.units < 1)) {
    throw new Error(`Invalid --units ${config.units}: use a positive integer (the number of units to train).`);
  }
  if (config.strategy === 'similarity' && config.method !== 'cka' && !config.source) {
    throw new Error(`Similarity method '${config.method}' needs source-domain images: pass --source DIR (a folder with one sub-folder of images per class).`);
  }
  if (!fs.existsSync(config.checkpoint)) throw new Error(`Checkpoint not found: ${config.checkpoint}. Pass a checkpoint folder or safetensors file with --checkpoint.`);
  if (!fs.existsSync(config.data)) throw new Error(`Data folder not found: ${config.data}. Pass the dataset folder with --data.`);
  if (config.datasetOptions && 'limit' in config.datasetOptions) {
    throw new Error(`Invalid dataset option 'limit': set the images per split with --limit (config key 'limit') instead.`);
  }
}
