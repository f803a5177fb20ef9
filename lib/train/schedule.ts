// Learning-rate schedule: linear warmup from 0, then cosine decay to minLrRatio * baseLr,
// as in timm's CosineLRScheduler with warmup_lr_init = 0 and nanoGPT's get_lr.
// Layer-wise learning-rate decay (BEiT, Bao et al. 2022) scales each unit by decay^(distance
// from the top), so lower layers move less.
import { keptVisionUnits } from '../freeze/plan.ts';
import type { ClipGeometry } from '../freeze/units.ts';

export interface ScheduleConfig {
  baseLr: number;
  /** Steps (optimiser updates) of linear warmup. */
  warmupSteps: number;
  /** Total optimiser updates of the run; the cosine reaches its minimum here. */
  totalSteps: number;
  /** Final learning rate as a fraction of baseLr. */
  minLrRatio: number;
}

/** Returns the learning rate of optimiser update `step` (0-based). */
export function learningRateAt(step: number, cfg: ScheduleConfig): number {
  if (step < cfg.warmupSteps) return (cfg.baseLr * (step + 1)) / cfg.warmupSteps;
  const minLr = cfg.baseLr * cfg.minLrRatio;
  const decaySteps = Math.max(1, cfg.totalSteps - cfg.warmupSteps);
  const progress = Math.min(1, (step - cfg.warmupSteps) / decaySteps);
  return minLr + (cfg.baseLr - minLr) * 0.5 * (1 + Math.cos(Math.PI * progress));
}

/**
 * Returns a learning-rate multiplier per vision unit and the task head for layer-wise decay.
 * After truncation by k the kept tower has L = layers - k blocks: vision.embed has depth 0,
 * block i depth i+1, vision.head L+1 and the task head L+2, which gets multiplier 1.
 * Each unit gets decay^(L+2 - depth).
 */
export function layerDecayScales(config: ClipGeometry, truncate: number, decay: number): Record<string, number> {
  const kept = config.vision.layers - truncate;
  const scales: Record<string, number> = {};
  for (const name of keptVisionUnits(config, truncate)) {
    let depth: number;
    if (name === 'vision.embed') depth = 0;
    else if (name === 'vision.head') depth = kept + 1;
    else depth = Number(name.slice('vision.block.'.length)) + 1;
    scales[name] = decay ** (kept + 2 - depth);
  }
  scales.head = 1;
  return scales;
}
