// `clipfreeze train`: fine-tunes CLIP's image tower under a freeze plan and records the run.
// Settings come from the defaults, then --config FILE, then flags: every config key is also a
// flag (microBatchSize -> --micro-batch-size), so a config file and a command line mix freely.
import fs from 'node:fs';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { ConfigError, flagOf, loadTrainConfigFile, parseTrainConfig, TRAIN_DEFAULTS, TRAIN_KEYS, TRAIN_SCHEMA, type TrainConfig } from '../train/config.ts';
import { TrainingAbortedError, trainRun, type TrainRunResult } from '../train/trainer.ts';
import { readJson } from '../util/atomic.ts';
import { initBackend } from '../util/backend.ts';
import { moduleLog } from '../util/log.ts';

const logger = moduleLog('train');

const HELP: Record<keyof TrainConfig, string> = {
  method: 'label of the method in the report, e.g. full or truncate-2 (default: the plan)',
  checkpoint: 'checkpoint folder or .safetensors file (OpenAI or Hugging Face layout)',
  dataset: 'dataset name: chestxray14, luna16 or brats',
  data: 'dataset folder',
  datasetOptions: 'dataset options as a JSON object, e.g. \'{"positiveMinAreaMm2": 200}\' for brats (default: {})',
  trainUnits: "units to train: 'all', 'head', a list such as 'vision.block.8-11,vision.head,head', or plan JSON",
  truncate: 'number of top vision blocks to cut off',
  planFrom: "folder of a 'clipfreeze select' run whose plan to train (replaces --train-units and --truncate)",
  epochs: 'passes over the training split (fractions allowed)',
  maxSteps: 'stop after this many optimiser updates',
  batchSize: 'effective batch size: images per optimiser update',
  microBatchSize: 'images per forward/backward pass; gradients accumulate up to --batch-size',
  lr: 'peak learning rate',
  weightDecay: 'AdamW decoupled weight decay (not applied to gains, biases, embeddings)',
  beta1: 'AdamW beta1',
  beta2: 'AdamW beta2',
  eps: 'AdamW epsilon',
  warmupSteps: 'optimiser updates of linear warmup before the cosine decay',
  minLrRatio: 'final learning rate as a fraction of --lr',
  layerDecay: 'layer-wise learning-rate decay per unit of depth (1 = off)',
  headLrScale: 'learning-rate multiplier of the task head',
  clipGradNorm: 'max global gradient norm (0 = no clipping)',
  headInit: 'task head initialisation: zero-shot or random',
  posWeight: 'weight positives per finding by negatives/positives of the training split',
  patience: 'epochs without a better validation mean AUROC before early stopping (0 = never)',
  limit: "images per split: one number for every split, or 'train=400,val=100,test=100'",
  seed: 'seed of data order and initialisation',
  bootstrap: 'bootstrap replicates for the test confidence intervals (0 = none)',
  evaluateTest: 'score the test split after training (true or false); false writes no metrics.json',
  source: "source-domain set for forgetting, 'name=folder[:imagesPerClass]' (repeatable)",
  activationCache: 'cache the frozen prefix output on disk (true or false)',
  trainThreads: "threads that compute each step's gradients: a number, or auto for one per core (at most 4) on the wasm and cpu backends when the run is long enough to repay starting them",
  cacheDir: 'activation cache folder (default: <runs>/.cache/activations)',
  runs: 'folder of run records',
};

/**
 * Keys that --resume accepts as flags: they set how a run computes and caches, not its results,
 * so identityOf in lib/train/config.ts leaves them out of the run id and the run keeps its id.
 */
export const RESUME_SETTINGS: ReadonlyArray<keyof TrainConfig> = ['trainThreads', 'activationCache', 'cacheDir'];

interface TrainCliOptions extends Partial<Record<keyof TrainConfig, unknown>> {
  config?: string;
  resume?: string;
}

export function register(program: Command): void {
  const command = program
    .command('train')
    .description('Fine-tune CLIP under a freeze plan (units to train, blocks to cut off) and record metrics, history, cost and forgetting.')
    .option('--config <file>', 'train config JSON; flags override its keys')
    .option('--resume <run>', 'continue the run in this folder from its last finished epoch, with its recorded config (only --train-threads, --activation-cache and --cache-dir may change)');

  for (const key of TRAIN_KEYS) {
    const schema = TRAIN_SCHEMA.properties[key] as { type?: string | readonly string[]; enum?: readonly string[] };
    const types = ([] as string[]).concat(schema.type ?? []);
    const flag = flagOf(key);
    const fallback = (TRAIN_DEFAULTS as Record<string, unknown>)[key];
    const help = fallback === undefined || fallback === null || fallback === '' || key === 'limit' || key === 'source' || key === 'datasetOptions' ? HELP[key] : `${HELP[key]} (default: ${JSON.stringify(fallback)})`;
    if (key === 'limit') command.option(`${flag} <limits>`, help, parseLimit);
    else if (key === 'source') command.option(`${flag} <set>`, help, collectSource);
    else if (key === 'datasetOptions') command.option(`${flag} <json>`, help, parseJsonObject(flag));
    else if (key === 'trainThreads') command.option(`${flag} <n>`, help, parseThreads(flag));
    else if (types.includes('boolean')) command.option(`${flag} [bool]`, help, parseBoolean(flag));
    else if (types.includes('integer') || types.includes('number')) command.option(`${flag} <n>`, help, parseNumber(flag));
    else command.option(`${flag} <value>`, help);
  }

  command.action(async (opts: TrainCliOptions, cmd: Command) => {
    const backend = (cmd.optsWithGlobals() as { backend?: string }).backend;
    await initBackend(backend);

    let raw: Record<string, unknown> = {};
    let runsDir: string | undefined;
    let expectedRunId: string | undefined;
    if (opts.resume) {
      const runDir = path.resolve(opts.resume);
      const file = path.join(runDir, 'config.json');
      if (!fs.existsSync(runDir)) {
        throw new Error(
          `Cannot resume: run folder ${runDir} not found. Pass the folder of a 'clipfreeze train' run, such as runs/train-<method>-<hash>. ` +
            `List the runs with 'ls runs/' (or the folder that --runs named).`,
        );
      }
      if (!fs.existsSync(file)) throw new Error(`Cannot resume ${runDir}: it has no config.json, so it is not a run folder of 'clipfreeze train'.`);
      raw = recordedConfig(readJson<Record<string, unknown>>(file));
      runsDir = path.dirname(runDir);
      expectedRunId = path.basename(runDir);
    } else if (opts.config) {
      raw = loadTrainConfigFile(opts.config);
    }
    for (const key of TRAIN_KEYS) {
      if (opts[key] === undefined) continue;
      if (opts.resume && !RESUME_SETTINGS.includes(key)) {
        throw new ConfigError(
          `${flagOf(key)} cannot be combined with --resume: a resumed run keeps its recorded config. ` +
            `Only ${RESUME_SETTINGS.map(flagOf).join(', ')} may change on resume.`,
        );
      }
      raw[key] = opts[key];
    }

    const config = parseTrainConfig(raw, opts.config ? `train config ${opts.config} with flags` : 'train flags');
    const result = await trainStoppable(config, { runsDir, expectedRunId });
    if (!result) return;
    const { metrics, cost } = result;
    process.stdout.write(
      `${JSON.stringify({ runId: result.runId, runDir: result.runDir, testMeanAuroc: metrics?.meanAuroc ?? null, testMeanAurocCi: metrics?.meanAurocCi ?? null, valMeanAuroc: result.valMeanAuroc, cost })}\n`,
    );
  });
}

/** Exit codes of a process stopped by a signal: 128 + the signal number. */
const SIGNAL_EXIT_CODES: Record<'SIGINT' | 'SIGTERM', number> = { SIGINT: 130, SIGTERM: 143 };

/**
 * Runs trainRun so that Ctrl-C (SIGINT) or SIGTERM stops it before its next optimiser step,
 * with a message on how to resume. A second signal exits at once. Finished epochs are saved
 * either way. Returns null when a signal stopped the run.
 */
async function trainStoppable(config: TrainConfig, options: { runsDir?: string; expectedRunId?: string }): Promise<TrainRunResult | null> {
  const controller = new AbortController();
  let received: 'SIGINT' | 'SIGTERM' = 'SIGINT';
  const stop = (signal: 'SIGINT' | 'SIGTERM') => {
    if (controller.signal.aborted) process.exit(SIGNAL_EXIT_CODES[signal]);
    received = signal;
    // NOTE: the trainer checks the signal only between optimiser steps, so a signal after the
    // last step lets the run finish its test evaluation and complete.
    logger.warn(`${signal} received: the run stops before its next optimiser step and keeps its finished epochs. Send ${signal} again (Ctrl-C) to exit at once.`);
    controller.abort();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    return await trainRun(config, { ...options, signal: controller.signal });
  } catch (error) {
    if (!(error instanceof TrainingAbortedError)) throw error;
    logger.error(error.message);
    process.exitCode = SIGNAL_EXIT_CODES[received];
    return null;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

/** Returns the train config keys of a recorded config.json (which adds kind, plan, runId, ...). */
function recordedConfig(recorded: Record<string, unknown>): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  for (const key of TRAIN_KEYS) if (recorded[key] !== undefined) raw[key] = recorded[key];
  return raw;
}

function parseThreads(flag: string) {
  return (value: string): number | 'auto' => {
    if (value === 'auto') return 'auto';
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${flag} must be a positive integer or auto, got '${value}'.`);
    return n;
  };
}

function parseNumber(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`${flag} must be a number, got '${value}'.`);
    return n;
  };
}

function parseBoolean(flag: string) {
  return (value: string): boolean => {
    if (value === 'true') return true;
    if (value === 'false') return false;
    throw new InvalidArgumentError(`${flag} must be true or false, got '${value}'.`);
  };
}

/** Parses a flag whose value is a JSON object, with an error that names the flag and the parse failure. */
export function parseJsonObject(flag: string) {
  return (value: string): Record<string, unknown> => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch (err) {
      throw new InvalidArgumentError(`${flag} must be a JSON object, but '${value}' is invalid JSON: ${(err as Error).message}.`);
    }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new InvalidArgumentError(`${flag} must be a JSON object such as '{"key": 1}', got '${value}'.`);
    }
    return parsed as Record<string, unknown>;
  };
}

function parseLimit(value: string): Record<string, number> {
  const whole = Number(value);
  if (Number.isInteger(whole) && whole > 0) return { train: whole, val: whole, test: whole };
  const limits: Record<string, number> = {};
  for (const part of value.split(',')) {
    const match = /^(train|val|test)=(\d+)$/.exec(part.trim());
    if (!match || Number(match[2]) <= 0) {
      throw new InvalidArgumentError(`--limit must be a positive integer or a list like 'train=400,val=100,test=100', got '${value}'.`);
    }
    limits[match[1]] = Number(match[2]);
  }
  return limits;
}

function collectSource(value: string, previous: unknown[] = []): unknown[] {
  const match = /^([^=]+)=(.+?)(?::(\d+))?$/.exec(value);
  if (!match) throw new InvalidArgumentError(`--source must look like 'name=folder' or 'name=folder:imagesPerClass', got '${value}'.`);
  const set: Record<string, unknown> = { name: match[1], path: path.resolve(match[2]) };
  if (match[3]) set.limitPerClass = Number(match[3]);
  return [...previous, set];
}
