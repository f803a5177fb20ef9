// Training cost: FLOPs estimated from shapes, wall time, throughput and peak memory.
//
// FLOPs count multiply-adds as 2 operations, for matrix products only (layer norms, softmax
// and activations add well under 1% for ViT-B). Per image and unit:
//   vision.embed     2 * P * (3 * p * p) * W                   patch embedding of P patches
//   vision.block     2 * T * W * (3W + W + 2M) + 4 * T^2 * W    QKV, output, MLP, attention
//   vision.head      2 * W * E                                 class token only
//   head             2 * E * F
// with T = P + 1 tokens, width W, MLP width M, embedding E and F findings. A training step
// costs 1x forward for the frozen prefix (run outside the gradient tape), 3x for a trained
// unit (forward, gradient of the input and of the weights) and 2x for a frozen unit above
// the first trained one, whose input gradient the backward pass still needs.
import * as tf from '@tensorflow/tfjs';
import { cutOffBlocks, type FreezePlan } from '../freeze/plan.ts';
import { layerUnits, type ClipGeometry } from '../freeze/units.ts';

export interface CostJson {
  trainSeconds: number;
  evalSeconds: number;
  /** Training images per second of training wall time. */
  imagesPerSecond: number;
  /** Estimated training FLOPs: images seen times the per-image training cost. */
  flops: number;
  /** Estimated FLOPs of every evaluation pass (validation each epoch and the final test). */
  evalFlops: number;
  trainFlopsPerImage: number;
  forwardFlopsPerImage: number;
  imagesSeen: number;
  trainableParams: number;
  totalParams: number;
  /** Peak bytes held by TF.js tensors, sampled after each micro-batch's forward pass and update. */
  peakTensorBytes: number;
  /** Peak resident set size of the process (getrusage maxrss). */
  peakRssBytes: number;
  backend: string;
  /** Size of the wasm backend's heap at the end (it only grows, so this is its peak); null on other backends. */
  wasmHeapBytes: number | null;
  /** Threads that computed gradients in the session that finished the run (1 = the main thread alone; absent in older records). */
  trainThreads?: number;
  /** Prefix outputs read from / computed for the activation cache (absent when it is off). */
  activationCacheHits?: number;
  activationCacheMisses?: number;
}

/** Returns the forward FLOPs of one unit for one image (0 for text units and the logit scale). */
export function unitForwardFlops(config: ClipGeometry, unit: string, findings: number): number {
  const v = config.vision;
  const patches = (v.imageSize / v.patchSize) ** 2;
  const tokens = patches + 1;
  if (unit === 'vision.embed') return 2 * patches * 3 * v.patchSize * v.patchSize * v.width;
  if (unit.startsWith('vision.block.')) return 2 * tokens * v.width * (4 * v.width + 2 * v.mlpDim) + 4 * tokens * tokens * v.width;
  if (unit === 'vision.head') return 2 * v.width * config.embedDim;
  if (unit === 'head') return 2 * config.embedDim * findings;
  return 0;
}

/** Returns the per-image forward FLOPs of the image path under a plan's truncation. */
export function forwardFlopsPerImage(config: ClipGeometry, plan: FreezePlan, findings: number): number {
  const cut = new Set(cutOffBlocks(config, plan.truncate));
  let total = 0;
  for (const unit of layerUnits(config, findings)) {
    if (!cut.has(unit.name)) total += unitForwardFlops(config, unit.name, findings);
  }
  return total;
}

/** Returns the per-image FLOPs of one training step under a plan (see the file header). */
export function trainFlopsPerImage(config: ClipGeometry, plan: FreezePlan, findings: number): number {
  const cut = new Set(cutOffBlocks(config, plan.truncate));
  const trained = new Set(plan.train);
  const path = layerUnits(config, findings).filter((u) => (u.tower === 'vision' || u.tower === 'head') && !cut.has(u.name));
  let total = 0;
  let insideTape = false;
  for (const unit of path) {
    if (trained.has(unit.name)) insideTape = true;
    let multiplier = 1;
    if (trained.has(unit.name)) multiplier = 3;
    else if (insideTape) multiplier = 2;
    total += multiplier * unitForwardFlops(config, unit.name, findings);
  }
  return total;
}

/** Returns the peak resident set size of this process since it started, in bytes. */
export function peakRssBytes(): number {
  // process.resourceUsage().maxRSS is in kilobytes (getrusage ru_maxrss on Linux).
  return Math.max(process.resourceUsage().maxRSS * 1024, process.memoryUsage().rss);
}

/** Returns the size of the wasm backend's heap in bytes, or null on another backend. */
export function wasmHeapBytes(): number | null {
  if (tf.getBackend() !== 'wasm') return null;
  const backend = tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } };
  return backend.wasm?.HEAPU8?.byteLength ?? null;
}

/** Tracks wall time per phase, images seen and the peak tensor bytes of a run. */
export class CostMeter {
  trainSeconds = 0;
  evalSeconds = 0;
  imagesSeen = 0;
  evalImages = 0;
  peakTensorBytes = 0;
  /**
   * Largest RSS sampled during this run. NOTE: the wasm heap never shrinks, so a run that follows
   * a larger one in the same process (a study) reports at least that run's heap.
   */
  peakRssBytes = 0;

  constructor(initial?: { trainSeconds: number; evalSeconds: number; imagesSeen: number; evalImages?: number }) {
    if (initial) {
      this.trainSeconds = initial.trainSeconds;
      this.evalSeconds = initial.evalSeconds;
      this.imagesSeen = initial.imagesSeen;
      this.evalImages = initial.evalImages ?? 0;
    }
  }

  /** Runs `work` and adds its wall time to the phase. */
  async time<T>(phase: 'train' | 'eval', work: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await work();
    } finally {
      const seconds = (performance.now() - started) / 1000;
      if (phase === 'train') this.trainSeconds += seconds;
      else this.evalSeconds += seconds;
    }
  }

  sampleMemory(): void {
    this.peakTensorBytes = Math.max(this.peakTensorBytes, tf.memory().numBytes);
    this.peakRssBytes = Math.max(this.peakRssBytes, process.memoryUsage().rss);
  }

  summary(args: {
    config: ClipGeometry;
    plan: FreezePlan;
    findings: number;
    trainableParams: number;
    totalParams: number;
    backend: string;
  }): CostJson {
    const perImageTrain = trainFlopsPerImage(args.config, args.plan, args.findings);
    const perImageForward = forwardFlopsPerImage(args.config, args.plan, args.findings);
    return {
      trainSeconds: this.trainSeconds,
      evalSeconds: this.evalSeconds,
      imagesPerSecond: this.trainSeconds > 0 ? this.imagesSeen / this.trainSeconds : 0,
      flops: perImageTrain * this.imagesSeen,
      evalFlops: perImageForward * this.evalImages,
      trainFlopsPerImage: perImageTrain,
      forwardFlopsPerImage: perImageForward,
      imagesSeen: this.imagesSeen,
      trainableParams: args.trainableParams,
      totalParams: args.totalParams,
      peakTensorBytes: this.peakTensorBytes,
      peakRssBytes: Math.max(this.peakRssBytes, process.memoryUsage().rss),
      backend: args.backend,
      wasmHeapBytes: wasmHeapBytes(),
    };
  }
}
