// Model shapes and freeze plans shared by the clipfreeze side of the benchmark (task.ts) and
// its orchestrator (run.ts). torch_peer.py builds the same shapes and plans in PyTorch.
import { presetConfig, type ClipConfig } from '../lib/clip/config.ts';

export type BenchModel = 'ViT-B/32' | 'tiny';
export type BenchPlan = 'full' | 'frozen8' | 'head';
export const BENCH_PLANS: BenchPlan[] = ['full', 'frozen8', 'head'];

/** Returns ViT-B/32, or the 'tiny' smoke-test shape: 32x32 images, 4 blocks of width 64. */
export function benchConfig(model: BenchModel): ClipConfig {
  const config = presetConfig('ViT-B/32');
  if (model === 'ViT-B/32') return config;
  config.embedDim = 32;
  config.vision = { imageSize: 32, patchSize: 8, width: 64, layers: 4, heads: 4, mlpDim: 256 };
  config.text = { contextLength: 77, vocabSize: 1000, width: 32, layers: 1, heads: 2, mlpDim: 128 };
  return config;
}

/**
 * Index of the first trained vision block of the 'frozen8' plan: 8 of ViT-B/32's 12 blocks
 * are frozen, and the same two thirds (rounded) of a smaller tower.
 */
export function firstTrainedBlock(layers: number): number {
  return Math.round((layers * 8) / 12);
}

/** Returns the freeze plan string (lib/freeze/plan.ts syntax) of a benchmark plan. */
export function planSpec(plan: BenchPlan, layers: number): string {
  if (plan === 'full') return 'all';
  if (plan === 'head') return 'head';
  return `vision.block.${firstTrainedBlock(layers)}-${layers - 1},vision.head,head`;
}
