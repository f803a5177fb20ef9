// The study config: which checkpoint, which data, which methods, how many seeds, and the
// training budget. Validated with a JSON schema, so an error names the key and what is allowed.
import fs from 'node:fs';
import path from 'node:path';
import AjvModule from 'ajv';
import { TRAIN_SCHEMA } from '../train/config.ts';
import { resolveDatasetOptionPaths } from '../train/config.ts';

export interface SourceSetConfig {
  /** Label in the report, e.g. 'cifar10-test'. */
  name: string;
  /** Folder-per-class image set. */
  path: string;
  /** Images per class used to measure forgetting (a seeded sample). */
  limitPerClass: number;
}

export type MethodConfig =
  | { name: string; kind: 'zero-shot' }
  | { name: string; kind: 'train'; plan: string; truncate?: number }
  | { name: string; kind: 'select'; strategy: 'similarity' | 'gradient' | 'search'; settings?: Record<string, unknown> };

export interface StudyConfig {
  name: string;
  checkpoint: string;
  dataset: 'chestxray14' | 'luna16' | 'brats';
  data: string;
  /** Options of the dataset opener (e.g. a BraTS tumour-area threshold), passed to every run. */
  datasetOptions: Record<string, unknown>;
  source: SourceSetConfig[];
  seeds: number[];
  /** Images per split; null = the whole split. */
  limit: { train: number | null; val: number | null; test: number | null };
  /** Training settings shared by every method that trains (keys of the train config). */
  train: Record<string, unknown>;
  methods: MethodConfig[];
  bootstrap: number;
  runs: string;
  report: string;
  /** False for a randomly initialised checkpoint: the report then warns that its numbers do not measure CLIP. */
  pretrained: boolean;
}

export const STUDY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'checkpoint', 'dataset', 'data', 'seeds', 'methods'],
  properties: {
    name: { type: 'string', pattern: '^[A-Za-z0-9._-]+$' },
    checkpoint: { type: 'string', minLength: 1 },
    dataset: { enum: ['chestxray14', 'luna16', 'brats'] },
    data: { type: 'string', minLength: 1 },
    datasetOptions: { type: 'object' },
    // The same shapes as in the train config, which every training trial receives.
    source: TRAIN_SCHEMA.properties.source,
    seeds: { type: 'array', minItems: 1, items: { type: 'integer', minimum: 0 } },
    limit: TRAIN_SCHEMA.properties.limit,
    train: { type: 'object' },
    methods: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['name', 'kind'],
        properties: {
          name: { type: 'string', pattern: '^[A-Za-z0-9._-]+$' },
          kind: { enum: ['zero-shot', 'train', 'select'] },
          plan: { type: 'string', minLength: 1 },
          truncate: { type: 'integer', minimum: 0 },
          strategy: { enum: ['similarity', 'gradient', 'search'] },
          settings: { type: 'object' },
        },
        additionalProperties: false,
      },
    },
    bootstrap: { type: 'integer', minimum: 0 },
    runs: { type: 'string', minLength: 1 },
    report: { type: 'string', minLength: 1 },
    pretrained: { type: 'boolean' },
  },
} as const;

const Ajv = AjvModule.default ?? AjvModule;
const validate = new Ajv({ allErrors: true, useDefaults: false }).compile(STUDY_SCHEMA);

/** Checks `raw` against the schema and fills defaults. Errors name the key and the allowed values. */
export function parseStudyConfig(raw: unknown, origin = 'study config'): StudyConfig {
  if (!validate(raw)) {
    const problems = (validate.errors ?? []).map((e) => {
      const where = e.instancePath ? e.instancePath.slice(1).replaceAll('/', '.') : '(top level)';
      const params = e.params as Record<string, unknown>;
      if (e.keyword === 'additionalProperties') return `${where}: unknown key '${params.additionalProperty}'`;
      if (e.keyword === 'enum') return `${where}: ${e.message} (${(params.allowedValues as unknown[]).join(', ')})`;
      return `${where}: ${e.message}`;
    });
    throw new Error(`Invalid ${origin}:\n  ${problems.join('\n  ')}`);
  }
  const config = raw as Partial<StudyConfig> & Pick<StudyConfig, 'name' | 'checkpoint' | 'dataset' | 'data' | 'seeds' | 'methods'>;

  const names = new Set<string>();
  for (const method of config.methods) {
    if (names.has(method.name)) throw new Error(`Invalid ${origin}: methods: duplicate method name '${method.name}'`);
    names.add(method.name);
    if (method.kind === 'train' && !('plan' in method && method.plan)) {
      throw new Error(`Invalid ${origin}: method '${method.name}' of kind 'train' needs a 'plan' (e.g. "all" or "vision.block.8-11,vision.head")`);
    }
    if (method.kind === 'select' && !('strategy' in method && method.strategy)) {
      throw new Error(`Invalid ${origin}: method '${method.name}' of kind 'select' needs a 'strategy' (similarity, gradient or search)`);
    }
  }

  if (config.datasetOptions && 'limit' in config.datasetOptions) {
    throw new Error(`Invalid ${origin}: datasetOptions: 'limit' is not allowed. Set the images per split with the top-level 'limit' key instead.`);
  }

  return {
    name: config.name,
    checkpoint: config.checkpoint,
    dataset: config.dataset,
    data: config.data,
    datasetOptions: config.datasetOptions ?? {},
    source: (config.source ?? []).map((s) => ({ ...s, limitPerClass: s.limitPerClass ?? 10 })),
    seeds: config.seeds,
    limit: { train: null, val: null, test: null, ...config.limit },
    train: config.train ?? {},
    methods: config.methods,
    bootstrap: config.bootstrap ?? 200,
    runs: config.runs ?? 'runs',
    report: config.report ?? 'reports/report.html',
    pretrained: config.pretrained ?? true,
  };
}

/** Reads and validates a study config file; relative paths in it resolve against the file's folder. */
export function loadStudyConfig(file: string): StudyConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`Failed to read study config ${file}: ${(err as Error).message}`);
  }
  const config = parseStudyConfig(raw, `study config ${file}`);
  const base = path.dirname(path.resolve(file));
  const resolve = (p: string) => (path.isAbsolute(p) ? p : path.resolve(base, p));
  return {
    ...config,
    checkpoint: resolve(config.checkpoint),
    data: resolve(config.data),
    datasetOptions: resolveDatasetOptionPaths(config.datasetOptions, base),
    source: config.source.map((s) => ({ ...s, path: resolve(s.path) })),
  };
}
