// The training config: every setting of a fine-tuning run, validated against a JSON schema
// so that an error names the key and the allowed values. Every key is also a CLI flag
// (camelCase key -> --kebab-case flag, e.g. microBatchSize -> --micro-batch-size).
import fs from 'node:fs';
import path from 'node:path';
import AjvModule from 'ajv';
import { openImageFolder } from '../data/imageFolder.ts';
import { MAX_BOOTSTRAP_SAMPLES } from '../eval/bootstrap.ts';
import { readJson } from '../util/atomic.ts';

export interface SourceSet {
  /** Label in run records and the report, e.g. 'cifar10-test'. */
  name: string;
  /** Folder-per-class image set. */
  path: string;
  /** Images per class used to measure forgetting (a seeded sample). */
  limitPerClass: number;
}

export interface SplitLimits {
  train: number | null;
  val: number | null;
  test: number | null;
}

export interface TrainConfig {
  /** Label of the method in the report, e.g. 'full', 'truncate-2', 'similarity-cka'. */
  method: string;
  /** Checkpoint folder or file (OpenAI or Hugging Face layout). */
  checkpoint: string;
  dataset: 'chestxray14' | 'luna16' | 'brats';
  /** Dataset folder. */
  data: string;
  /**
   * Options of the dataset opener, e.g. BraTS {positiveMinAreaMm2: 200} or LUNA16 {mode: 'patch'}.
   * The opener rejects keys it does not know; the split limits come from `limit`, not from here.
   */
  datasetOptions: Record<string, unknown>;
  /** Freeze plan: a unit list such as 'vision.block.8-11,vision.head,head', 'all', 'head', or plan JSON. */
  trainUnits: string;
  /** Top vision blocks cut off. */
  truncate: number;
  /** Select run folder whose selection.json plan replaces trainUnits and truncate. */
  planFrom: string | null;
  /** Passes over the training split; fractions allowed (0.5 = half the batches of one epoch). */
  epochs: number;
  /** Stop after this many optimiser updates (null = no cap); for short search trials. */
  maxSteps: number | null;
  /** Effective batch size: images per optimiser update. */
  batchSize: number;
  /** Images per forward/backward pass; gradients are accumulated up to batchSize. */
  microBatchSize: number;
  /** Peak learning rate. */
  lr: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Optimiser updates of linear warmup. */
  warmupSteps: number;
  /** Final learning rate of the cosine decay as a fraction of lr. */
  minLrRatio: number;
  /** Layer-wise learning-rate decay per unit of depth below the task head (1 = off). */
  layerDecay: number;
  /** Learning-rate multiplier of the task head relative to lr. */
  headLrScale: number;
  /** Max global gradient norm (0 = no clipping). */
  clipGradNorm: number;
  /** Task head initialisation: the zero-shot classifier or small random weights. */
  headInit: 'zero-shot' | 'random';
  /** Weight positives per finding by negatives / positives of the training split. */
  posWeight: boolean;
  /** Epochs without a better validation mean AUROC before stopping (0 = never stop early). */
  patience: number;
  /** Images per split (null = the whole split). */
  limit: SplitLimits;
  seed: number;
  /** Bootstrap resamples for the test confidence intervals (patient level). */
  bootstrap: number;
  /**
   * Score the test split after training (metrics.json, predictions.csv). Search trials turn it
   * off: they are compared on validation AUROC only, so test data stays out of the selection.
   */
  evaluateTest: boolean;
  /** Source-domain sets for forgetting (zero-shot top-1 before and after). */
  source: SourceSet[];
  /** Cache the frozen prefix's activations on disk (only without augmentation). */
  activationCache: boolean;
  /** Folder of the activation cache (null = <runs>/.cache/activations). */
  cacheDir: string | null;
  /**
   * Threads that compute each step's gradients (1 = the main thread alone), or 'auto': every
   * core (up to 4) on the wasm and cpu backends for runs long enough to repay the workers'
   * start. Results agree across thread counts up to float rounding.
   */
  trainThreads: number | 'auto';
  /** Folder of run records. */
  runs: string;
}

export const TRAIN_DEFAULTS: Omit<TrainConfig, 'checkpoint' | 'data'> = {
  method: '',
  dataset: 'chestxray14',
  datasetOptions: {},
  trainUnits: 'all',
  truncate: 0,
  planFrom: null,
  epochs: 5,
  maxSteps: null,
  batchSize: 32,
  // Full fine-tuning of ViT-B/32 on wasm peaked at 3.1 GiB of the 4 GiB heap with micro-batches
  // of 4 and reached the cap with 8 (bench/memory-full-ft.ts, TF.js 4.22).
  microBatchSize: 4,
  lr: 1e-5,
  weightDecay: 0.1,
  beta1: 0.9,
  beta2: 0.98,
  eps: 1e-6,
  warmupSteps: 10,
  minLrRatio: 0,
  layerDecay: 1,
  headLrScale: 10,
  clipGradNorm: 1,
  headInit: 'zero-shot',
  posWeight: false,
  patience: 3,
  limit: { train: null, val: null, test: null },
  seed: 0,
  bootstrap: 200,
  evaluateTest: true,
  source: [],
  activationCache: true,
  cacheDir: null,
  trainThreads: 'auto',
  runs: 'runs',
};

const limitSchema = { type: ['integer', 'null'], minimum: 1 };

export const TRAIN_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['checkpoint', 'data'],
  properties: {
    method: { type: 'string', pattern: '^[A-Za-z0-9._-]*$' },
    checkpoint: { type: 'string', minLength: 1 },
    dataset: { enum: ['chestxray14', 'luna16', 'brats'] },
    data: { type: 'string', minLength: 1 },
    datasetOptions: { type: 'object' },
    trainUnits: { type: 'string', minLength: 1 },
    truncate: { type: 'integer', minimum: 0 },
    planFrom: { type: ['string', 'null'] },
    epochs: { type: 'number', exclusiveMinimum: 0 },
    maxSteps: { type: ['integer', 'null'], minimum: 1 },
    batchSize: { type: 'integer', minimum: 1 },
    microBatchSize: { type: 'integer', minimum: 1 },
    lr: { type: 'number', exclusiveMinimum: 0 },
    weightDecay: { type: 'number', minimum: 0 },
    beta1: { type: 'number', minimum: 0, exclusiveMaximum: 1 },
    beta2: { type: 'number', minimum: 0, exclusiveMaximum: 1 },
    eps: { type: 'number', exclusiveMinimum: 0 },
    warmupSteps: { type: 'integer', minimum: 0 },
    minLrRatio: { type: 'number', minimum: 0, maximum: 1 },
    layerDecay: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
    headLrScale: { type: 'number', minimum: 0 },
    clipGradNorm: { type: 'number', minimum: 0 },
    headInit: { enum: ['zero-shot', 'random'] },
    posWeight: { type: 'boolean' },
    patience: { type: 'integer', minimum: 0 },
    limit: {
      type: 'object',
      additionalProperties: false,
      properties: { train: limitSchema, val: limitSchema, test: limitSchema },
    },
    seed: { type: 'integer', minimum: 0 },
    bootstrap: { type: 'integer', minimum: 0, maximum: MAX_BOOTSTRAP_SAMPLES },
    evaluateTest: { type: 'boolean' },
    source: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'path'],
        properties: {
          name: { type: 'string', minLength: 1 },
          path: { type: 'string', minLength: 1 },
          limitPerClass: { type: 'integer', minimum: 1 },
        },
      },
    },
    activationCache: { type: 'boolean' },
    cacheDir: { type: ['string', 'null'] },
    trainThreads: { anyOf: [{ type: 'integer', minimum: 1 }, { const: 'auto' }] },
    runs: { type: 'string', minLength: 1 },
  },
} as const;

export const TRAIN_KEYS = Object.keys(TRAIN_SCHEMA.properties) as Array<keyof TrainConfig>;

const Ajv = AjvModule.default ?? AjvModule;
const validate = new Ajv({ allErrors: true, verbose: true }).compile(TRAIN_SCHEMA);

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Returns the CLI flag of a config key: microBatchSize -> --micro-batch-size. */
export function flagOf(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** Describes the forms a key's `anyOf` schema accepts, e.g. 'a positive integer or "auto"'. */
function describeForms(key: string): string {
  type Form = { type?: string; minimum?: number; const?: unknown };
  const forms = (TRAIN_SCHEMA.properties as Record<string, { anyOf?: readonly Form[] }>)[key]?.anyOf ?? [];
  return forms
    .map((form) => {
      if (form.const !== undefined) return JSON.stringify(form.const);
      if (form.type === 'integer' && form.minimum === 1) return 'a positive integer';
      if (form.minimum !== undefined) return `a ${form.type} >= ${form.minimum}`;
      return `a ${form.type}`;
    })
    .join(' or ');
}

/**
 * Validates a raw config (parsed JSON merged with flags), fills defaults and checks the
 * relations between keys. Throws a ConfigError that names every bad key and the allowed values.
 */
export function parseTrainConfig(raw: unknown, origin = 'train config'): TrainConfig {
  if (!validate(raw)) {
    const problems = (validate.errors ?? []).map((e) => {
      const key = e.instancePath ? e.instancePath.slice(1).replaceAll('/', '.') : '';
      const params = e.params as Record<string, unknown>;
      if (e.keyword === 'additionalProperties') {
        const bad = key ? `${key}.${params.additionalProperty}` : String(params.additionalProperty);
        return `unknown key '${bad}'. Allowed keys: ${TRAIN_KEYS.join(', ')}`;
      }
      if (e.keyword === 'required') return `missing key '${params.missingProperty}' (flag ${flagOf(String(params.missingProperty))})`;
      if (e.keyword === 'enum') return `invalid value for '${key}': ${JSON.stringify(e.data)}. Allowed values: ${(params.allowedValues as unknown[]).join(', ')}`;
      // One message for a key that accepts several forms, instead of one per form.
      if (e.schemaPath.includes('/anyOf')) return `invalid value for '${key}': ${JSON.stringify(e.data)}. Use ${describeForms(key)}.`;
      return `invalid value for '${key}': ${JSON.stringify(e.data)} ${e.message}`;
    });
    throw new ConfigError(`Invalid ${origin}:\n  ${[...new Set(problems)].join('\n  ')}`);
  }

  const given = raw as Partial<TrainConfig> & Pick<TrainConfig, 'checkpoint' | 'data'>;
  const config: TrainConfig = {
    ...TRAIN_DEFAULTS,
    ...given,
    datasetOptions: { ...given.datasetOptions },
    limit: { ...TRAIN_DEFAULTS.limit, ...given.limit },
    source: (given.source ?? []).map((s) => ({ ...s, limitPerClass: s.limitPerClass ?? 10 })),
  };

  if (config.microBatchSize > config.batchSize) {
    throw new ConfigError(`Invalid ${origin}: 'microBatchSize' ${config.microBatchSize} exceeds 'batchSize' ${config.batchSize}. Use a micro-batch size up to the batch size.`);
  }
  if (config.batchSize % config.microBatchSize !== 0) {
    throw new ConfigError(
      `Invalid ${origin}: 'batchSize' ${config.batchSize} is not a multiple of 'microBatchSize' ${config.microBatchSize}. Choose a micro-batch size that divides the batch size.`,
    );
  }
  if ('limit' in config.datasetOptions) {
    throw new ConfigError(`Invalid ${origin}: 'datasetOptions.limit' is not allowed. Set the images per split with the 'limit' key (flag --limit) instead.`);
  }
  return config;
}

/**
 * Checks that the input paths of a config exist: the checkpoint, the dataset folder, the plan's
 * select run, the dataset options' files (keys ending in File or Csv) and every source set, which
 * must be a folder-per-class image set. Called before a run folder is created, so a mistyped path
 * fails at once and leaves no unfinished run behind.
 */
export function checkInputPaths(config: TrainConfig): void {
  if (!fs.existsSync(config.checkpoint)) {
    throw new ConfigError(`Checkpoint not found: ${path.resolve(config.checkpoint)} ('checkpoint', flag --checkpoint). Pass a checkpoint folder or .safetensors file.`);
  }
  if (!fs.existsSync(config.data)) {
    throw new ConfigError(`Dataset folder not found: ${path.resolve(config.data)} ('data', flag --data). Pass the folder of the ${config.dataset} dataset.`);
  }
  if (config.planFrom !== null && !fs.existsSync(config.planFrom)) {
    throw new ConfigError(`Select run not found: ${path.resolve(config.planFrom)} ('planFrom', flag --plan-from). Pass the folder of a finished 'clipfreeze select' run.`);
  }
  for (const [key, value] of Object.entries(config.datasetOptions)) {
    if (/(File|Csv)$/.test(key) && typeof value === 'string' && !fs.existsSync(value)) {
      throw new ConfigError(`File not found: ${path.resolve(value)} ('datasetOptions.${key}', flag --dataset-options). Check the path, or leave the key out to use the dataset's default.`);
    }
  }
  for (const set of config.source) {
    try {
      openImageFolder(set.path);
    } catch (err) {
      throw new ConfigError(`Invalid source set '${set.name}' ('source', flag --source): ${(err as Error).message}`);
    }
  }
}

/** Reads a JSON config file; relative paths in it resolve against the file's folder. */
export function loadTrainConfigFile(file: string): Record<string, unknown> {
  if (!fs.existsSync(file)) throw new ConfigError(`Train config not found: ${file}.`);
  const raw = readJson<Record<string, unknown>>(file);
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`Invalid train config ${file}: expected a JSON object.`);
  const base = path.dirname(path.resolve(file));
  for (const key of ['checkpoint', 'data', 'planFrom', 'cacheDir', 'runs'] as const) {
    const value = raw[key];
    if (typeof value === 'string' && !path.isAbsolute(value)) raw[key] = path.resolve(base, value);
  }
  if (raw.datasetOptions && typeof raw.datasetOptions === 'object' && !Array.isArray(raw.datasetOptions)) {
    raw.datasetOptions = resolveDatasetOptionPaths(raw.datasetOptions as Record<string, unknown>, base);
  }
  if (Array.isArray(raw.source)) {
    raw.source = raw.source.map((s: unknown) => {
      const set = s as Record<string, unknown>;
      return typeof set?.path === 'string' && !path.isAbsolute(set.path) ? { ...set, path: path.resolve(base, set.path) } : s;
    });
  }
  return raw;
}

/**
 * Resolves the relative file and folder paths among dataset options (keys ending in File, Csv or
 * Dir, such as splitFile or annotationsCsv) against `base`, the folder of the config file.
 */
export function resolveDatasetOptionPaths(options: Record<string, unknown>, base: string): Record<string, unknown> {
  const resolved: Record<string, unknown> = { ...options };
  for (const [key, value] of Object.entries(options)) {
    if (/(File|Csv|Dir)$/.test(key) && typeof value === 'string' && !path.isAbsolute(value)) resolved[key] = path.resolve(base, value);
  }
  return resolved;
}

/**
 * Returns the part of a config that determines a run's results, for its run id: everything
 * except where records and caches are written and how many threads compute. Keys at their defaults that older versions did
 * not have (empty datasetOptions, evaluateTest true) are left out, so recorded runs keep their ids.
 */
export function identityOf(config: TrainConfig): Record<string, unknown> {
  const { runs: _runs, cacheDir: _cacheDir, activationCache: _activationCache, trainThreads: _trainThreads, datasetOptions, evaluateTest, ...identity } = config;
  return {
    ...identity,
    ...(Object.keys(datasetOptions).length > 0 ? { datasetOptions } : {}),
    ...(evaluateTest ? {} : { evaluateTest }),
  };
}
