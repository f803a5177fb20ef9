// `clipfreeze zero-shot`: evaluates a checkpoint with no training on a dataset split and writes
// a run record (predictions.csv, metrics.json, config.json, environment.json, run.log).
import { Command, InvalidArgumentError } from 'commander';
import type { Split } from '../data/dataset.ts';
import type { DatasetName } from '../data/registry.ts';
import { MAX_BOOTSTRAP_SAMPLES } from '../eval/bootstrap.ts';
import { runZeroShot } from '../eval/zeroShotRun.ts';
import { parseJsonObject } from './train.ts';

function positiveInteger(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive integer, got '${value}'.`);
    return n;
  };
}

function nonNegativeInteger(name: string, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer, got '${value}'.`);
    if (n > max) throw new InvalidArgumentError(`${name} must be at most ${max}, got '${value}'.`);
    return n;
  };
}

interface ZeroShotCliOptions {
  checkpoint: string;
  data: string;
  split: Split;
  dataset: DatasetName;
  datasetOptions?: Record<string, unknown>;
  limit?: number;
  runs: string;
  prompts?: string;
  bootstrap: number;
  seed: number;
  batchSize: number;
  force?: boolean;
  strictImages?: boolean;
}

export function register(program: Command): void {
  program
    .command('zero-shot')
    .description('Evaluate CLIP zero-shot (no training) on a dataset split with prompt pairs per finding, and record the run.')
    .requiredOption('--checkpoint <dir>', 'checkpoint folder or .safetensors file')
    .requiredOption('--data <dir>', 'dataset folder')
    .option('--split <split>', 'split to evaluate: test, val or train', 'test')
    .option('--dataset <name>', 'dataset name: chestxray14, luna16 or brats', 'chestxray14')
    .option('--dataset-options <json>', 'dataset options as a JSON object, e.g. \'{"mode": "slice"}\' for luna16', parseJsonObject('--dataset-options'))
    .option('--limit <n>', 'maximum images, a seeded sample stratified by finding', positiveInteger('--limit'))
    .option('--runs <dir>', 'folder for run records', 'runs')
    .option('--prompts <file>', 'prompt templates JSON replacing the shipped ones')
    .option('--bootstrap <n>', `bootstrap replicates for confidence intervals, at most ${MAX_BOOTSTRAP_SAMPLES} (0 turns them off)`, nonNegativeInteger('--bootstrap', MAX_BOOTSTRAP_SAMPLES), 1000)
    .option('--seed <s>', 'seed of the sample and the bootstrap', nonNegativeInteger('--seed'), 0)
    .option('--batch-size <n>', 'images per forward pass', positiveInteger('--batch-size'), 16)
    .option('--force', 'recompute even when a complete record of this config exists')
    .option('--strict-images', 'fail when an image listed in the split lists is missing, instead of skipping it (ChestX-ray14)')
    .action(async (opts: ZeroShotCliOptions, cmd: Command) => {
      if (!['test', 'val', 'train'].includes(opts.split)) throw new Error(`Invalid --split '${opts.split}': expected test, val or train.`);
      const backend = (cmd.optsWithGlobals() as { backend?: string }).backend;
      const result = await runZeroShot({
        checkpoint: opts.checkpoint,
        data: opts.data,
        split: opts.split,
        dataset: opts.dataset,
        // Only a strict run records strictImages, so the run ids of default runs stay as they were.
        datasetOptions: opts.strictImages ? { ...opts.datasetOptions, strictImages: true } : opts.datasetOptions,
        limit: opts.limit,
        runsDir: opts.runs,
        promptsFile: opts.prompts,
        bootstrap: opts.bootstrap,
        seed: opts.seed,
        batchSize: opts.batchSize,
        force: opts.force,
        backend,
      });
      const { metrics } = result;
      process.stdout.write(
        `${JSON.stringify({ runId: result.runId, runDir: result.runDir, reused: result.reused, split: metrics.split, n: metrics.n, meanAuroc: metrics.meanAuroc, meanAurocCi: metrics.meanAurocCi, definedFindings: metrics.definedFindings })}\n`,
      );
    });
}
