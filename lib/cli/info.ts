// `clipfreeze info`: validates a checkpoint and prints its config and the parameter count of
// every layer unit (embeddings, each vision and text block, heads) as JSON on stdout.
import type { Command } from 'commander';
import { loadCheckpoint } from '../clip/checkpoint.ts';
import type { ClipConfig } from '../clip/config.ts';
import { HEAD_UNIT, layerUnits, unitParamCount } from '../freeze/units.ts';

/** Output of `clipfreeze info`. */
export interface CheckpointInfo {
  checkpoint: string;
  format: 'openai' | 'hf';
  files: string[];
  sha256: string;
  config: ClipConfig;
  parameters: { total: number; vision: number; text: number; logitScale: number };
  /** Parameter count per layer unit (vision.embed, vision.block.0, ...), in forward order. */
  units: Record<string, number>;
}

/** Loads and validates a checkpoint, then counts its parameters per layer unit. */
export function checkpointInfo(checkpointPath: string): CheckpointInfo {
  const checkpoint = loadCheckpoint(checkpointPath);
  const sizeOf = (name: string) => checkpoint.weights.get(name)?.data.length;

  // The task head is created at training time, so a checkpoint has no parameters for it.
  const units = layerUnits(checkpoint.config)
    .filter((unit) => unit.name !== HEAD_UNIT)
    .map((unit) => ({ unit: unit.name, tower: unit.tower, parameters: unitParamCount(unit, sizeOf) }));
  const sum = (tower: string) => units.filter((u) => u.tower === tower).reduce((total, u) => total + u.parameters, 0);

  return {
    checkpoint: checkpointPath,
    format: checkpoint.format,
    files: checkpoint.files,
    sha256: checkpoint.sha256,
    config: checkpoint.config,
    parameters: {
      total: units.reduce((total, u) => total + u.parameters, 0),
      vision: sum('vision'),
      text: sum('text'),
      logitScale: sum('logit_scale'),
    },
    units: Object.fromEntries(units.map((u) => [u.unit, u.parameters])),
  };
}

export function register(program: Command): void {
  program
    .command('info')
    .description('Validate a checkpoint and print its config and the parameter count of every vision and text block as JSON.')
    .requiredOption('--checkpoint <path>', 'checkpoint folder or .safetensors file (OpenAI or Hugging Face layout)')
    .action((opts: { checkpoint: string }) => {
      process.stdout.write(`${JSON.stringify(checkpointInfo(opts.checkpoint), null, 2)}\n`);
    });
}
