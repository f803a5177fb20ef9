// `clipfreeze select`: runs one layer-selection strategy (similarity, gradient or search) and
// records a 'select' run whose plan `clipfreeze train --plan-from RUN` trains. Settings come
// from the defaults, then --config FILE (a JSON object with the keys of SelectConfig), then flags.
// Prints {runId, runDir, plan} as JSON on stdout.
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import type { Split } from '../data/dataset.ts';
import type { DatasetName } from '../data/registry.ts';
import type { SearchBudget } from '../strategies/search.ts';
import { DEFAULT_BUDGET, DEFAULT_METHODS, runSelect, STRATEGIES, type SelectConfig } from '../strategies/selectRun.ts';
import type { StrategyName } from '../strategies/types.ts';
import { resolveDatasetOptionPaths } from '../train/config.ts';
import { readJson } from '../util/atomic.ts';
import { initBackend } from '../util/backend.ts';
import { addExecutorOptions, createExecutor } from '../study/executors.ts';

interface SelectCliOptions {
  strategy?: string;
  method?: string;
  checkpoint?: string;
  data?: string;
  dataset?: string;
  datasetOptions?: Record<string, unknown>;
  source?: string;
  units?: number;
  budget?: Partial<SearchBudget>;
  seed?: number;
  runs?: string;
  config?: string;
  limit?: Record<Split, number | null>;
  truncations?: number[];
  concurrency?: number;
  batches?: number;
  batchSize?: number;
  lrScale?: boolean;
  settings?: Record<string, unknown>;
  executor: string;
  redis?: string;
  queue: string;
  attempts?: number;
}

export function register(program: Command): void {
  const command = program
    .command('select')
    .description('Choose which layer units to train with one strategy and record the plan, per-unit scores and selection cost.')
    .option('--strategy <name>', `selection strategy: ${STRATEGIES.join(', ')}`)
    .option(
      '--method <name>',
      'similarity: mmd, frechet or cka (default mmd); gradient: rgn or autofreeze (default rgn); search: mask shape any, window or prefix (default any)',
    )
    .option('--checkpoint <dir>', 'checkpoint folder or .safetensors file (OpenAI or Hugging Face layout)')
    .option('--data <dir>', 'target dataset folder')
    .option('--dataset <name>', 'target dataset: chestxray14, luna16 or brats (default chestxray14)')
    .option('--dataset-options <json>', 'dataset options as a JSON object, e.g. \'{"positiveMinAreaMm2": 200}\' for brats', parseJsonObject)
    .option('--source <dir>', 'folder-per-class source-domain images (similarity mmd and frechet)')
    .option('--units <k>', 'number of units to train (similarity, gradient; default 4)', parsePositiveInteger)
    .option('--budget <spec>', "search budget, e.g. 'total=24,min=1,max=4,eta=2,unit=epochs' (unit: epochs or fraction; initial=N configurations per bracket)", parseBudget)
    .option('--truncations <list>', "search: allowed truncation depths, e.g. '0,1,2' (default 0)", parseIntegerList)
    .option('--concurrency <n>', 'search: trials of one rung run at the same time (default 1)', parsePositiveInteger)
    .option('--batches <n>', 'gradient: target batches to measure on (default 8)', parsePositiveInteger)
    .option('--batch-size <n>', 'gradient: images per batch (default 8); similarity: images per forward pass (default 16)', parsePositiveInteger)
    .option('--lr-scale', 'gradient rgn: output per-unit learning-rate multipliers for every vision unit instead of a top-K subset')
    .option('--limit <spec>', "images per split: one number for every split, or 'train=400,val=100,test=100'", parseLimit)
    .option('--settings <json>', 'strategy settings as a JSON object, e.g. \'{"targetImages": 128, "adaptSteps": 16}\'', parseJsonObject)
    .option('--seed <s>', 'seed of data order, sampling and the search (default 0)', parseInteger)
    .option('--runs <dir>', 'folder of run records (default runs)')
    .option('--config <file>', 'select config JSON; flags override its keys');
  addExecutorOptions(command).action(async (options: SelectCliOptions, cmd: Command) => {
    const config = buildSelectConfig(options);
    await initBackend(cmd.optsWithGlobals().backend as string | undefined);
    // Search trials go to the queue's workers with --executor bullmq; by default they train here.
    const executor = options.executor === 'bullmq' ? createExecutor('bullmq', { runsDir: config.runs, ...options }) : undefined;
    try {
      const { runId, runDir, selection } = await runSelect(config, { concurrency: options.concurrency, executor });
      process.stdout.write(JSON.stringify({ runId, runDir, plan: selection.plan }, null, 2) + '\n');
    } finally {
      await executor?.close();
    }
  });
}

/** Merges defaults, the config file and flags into a SelectConfig, with errors that name the flag. */
export function buildSelectConfig(options: SelectCliOptions): SelectConfig {
  const file = options.config ? readSelectConfigFile(options.config) : {};
  const strategy = (options.strategy ?? file.strategy) as StrategyName | undefined;
  if (!strategy) throw new Error(`Missing --strategy. Allowed values: ${STRATEGIES.join(', ')}.`);
  if (!STRATEGIES.includes(strategy)) throw new Error(`Invalid --strategy '${strategy}'. Allowed values: ${STRATEGIES.join(', ')}.`);
  const checkpoint = options.checkpoint ?? file.checkpoint;
  if (!checkpoint) throw new Error('Missing --checkpoint: pass a checkpoint folder or .safetensors file.');
  const data = options.data ?? file.data;
  if (!data) throw new Error('Missing --data: pass the target dataset folder.');

  const settings: Record<string, unknown> = { ...(file.settings ?? {}), ...(options.settings ?? {}) };
  if (options.truncations) settings.truncations = options.truncations;
  if (options.batches !== undefined) settings.batches = options.batches;
  if (options.batchSize !== undefined) settings.batchSize = options.batchSize;
  if (options.lrScale) settings.lrScale = true;

  const budget = strategy === 'search' ? { ...DEFAULT_BUDGET, ...(file.budget ?? {}), ...(options.budget ?? {}) } : null;
  return {
    strategy,
    method: options.method ?? file.method ?? DEFAULT_METHODS[strategy],
    checkpoint,
    dataset: (options.dataset ?? file.dataset ?? 'chestxray14') as DatasetName,
    data,
    datasetOptions: { ...(file.datasetOptions ?? {}), ...(options.datasetOptions ?? {}) },
    source: options.source ?? file.source ?? null,
    units: options.units ?? file.units ?? null,
    seed: options.seed ?? file.seed ?? 0,
    limit: options.limit ?? file.limit ?? { train: null, val: null, test: null },
    budget,
    settings,
    runs: options.runs ?? file.runs ?? 'runs',
  };
}

/** Reads a select config file; relative paths in it resolve against the file's folder, as in train and study configs. */
function readSelectConfigFile(file: string): Partial<SelectConfig> {
  const raw = readJson<Partial<SelectConfig>>(file);
  const base = path.dirname(path.resolve(file));
  const resolve = (value: string | null | undefined) => (typeof value === 'string' && !path.isAbsolute(value) ? path.resolve(base, value) : value);
  return {
    ...raw,
    checkpoint: resolve(raw.checkpoint) ?? undefined,
    data: resolve(raw.data) ?? undefined,
    source: resolve(raw.source),
    runs: resolve(raw.runs) ?? undefined,
    ...(raw.datasetOptions ? { datasetOptions: resolveDatasetOptionPaths(raw.datasetOptions, base) } : {}),
  };
}

function parseInteger(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new InvalidArgumentError(`'${value}' is not an integer.`);
  return n;
}

function parsePositiveInteger(value: string): number {
  const n = parseInteger(value);
  if (n < 1) throw new InvalidArgumentError(`'${value}' is not a positive integer.`);
  return n;
}

function parseIntegerList(value: string): number[] {
  return value.split(',').map((part) => {
    const n = Number(part.trim());
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`'${part}' in '${value}' is not a non-negative integer.`);
    return n;
  });
}

const BUDGET_KEYS: Record<string, keyof SearchBudget> = { total: 'total', min: 'minBudget', max: 'maxBudget', eta: 'eta', unit: 'unit', initial: 'initialTrials' };

function parseBudget(value: string): Partial<SearchBudget> {
  const out: Record<string, unknown> = {};
  for (const part of value.split(',')) {
    const [key, raw] = part.split('=').map((s) => s.trim());
    const field = BUDGET_KEYS[key];
    if (!field || raw === undefined) {
      throw new InvalidArgumentError(`'${part}' is not a budget setting. Use key=value with keys ${Object.keys(BUDGET_KEYS).join(', ')}.`);
    }
    if (field === 'unit') {
      if (raw !== 'epochs' && raw !== 'fraction') throw new InvalidArgumentError(`Invalid budget unit '${raw}'. Allowed values: epochs, fraction.`);
      out.unit = raw;
      continue;
    }
    const n = Number(raw);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`Budget '${key}' must be a positive number, got '${raw}'.`);
    out[field] = n;
  }
  return out as Partial<SearchBudget>;
}

function parseLimit(value: string): Record<Split, number | null> {
  if (/^\d+$/.test(value)) {
    const n = Number(value);
    return { train: n, val: n, test: n };
  }
  const out: Record<Split, number | null> = { train: null, val: null, test: null };
  for (const part of value.split(',')) {
    const [key, raw] = part.split('=').map((s) => s.trim());
    if (!(key === 'train' || key === 'val' || key === 'test') || !/^\d+$/.test(raw ?? '')) {
      throw new InvalidArgumentError(`'${part}' is not a split limit. Use a number, or train=N,val=N,test=N.`);
    }
    out[key] = Number(raw);
  }
  return out;
}

function parseJsonObject(value: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (err) {
    throw new InvalidArgumentError(`Invalid JSON '${value}': ${(err as Error).message}.`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new InvalidArgumentError('Expected a JSON object.');
  return parsed as Record<string, unknown>;
}
