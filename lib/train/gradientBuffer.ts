// Gradient accumulation in JavaScript memory, outside the wasm heap.
//
// The wasm backend has a 4 GiB heap. Full fine-tuning of the ViT-B/32 image tower keeps the
// weights (0.6 GB with the text tower), XNNPACK's packed copies of them, one micro-batch's
// gradients (0.35 GB) and its activations there. Holding the accumulated gradients there too
// ran out of heap in bench/memory-full-ft.ts, so each micro-batch's gradients are copied out,
// summed here in float32, and handed to AdamW one parameter at a time.
import type * as tf from '@tensorflow/tfjs';

export class GradientBuffer {
  private readonly sums = new Map<string, Float32Array>();

  /** Adds a gradient tensor to the named sum (the caller disposes the tensor). */
  add(name: string, gradient: tf.Tensor): void {
    this.addValues(name, gradient.dataSync() as Float32Array);
  }

  /** Adds gradient values (for example a worker thread's sums) to the named sum. */
  addValues(name: string, values: Float32Array): void {
    const sum = this.sums.get(name);
    if (!sum) {
      this.sums.set(name, Float32Array.from(values));
      return;
    }
    if (sum.length !== values.length) throw new Error(`Gradient of '${name}' has ${values.length} values, expected ${sum.length}.`);
    for (let i = 0; i < sum.length; i++) sum[i] += values[i];
  }

  get size(): number {
    return this.sums.size;
  }

  /** Returns the L2 norm over all sums (NaN or Infinity when any value is). */
  globalNorm(): number {
    let sumSquares = 0;
    for (const sum of this.sums.values()) for (let i = 0; i < sum.length; i++) sumSquares += sum[i] * sum[i];
    return Math.sqrt(sumSquares);
  }

  scale(factor: number): void {
    for (const sum of this.sums.values()) for (let i = 0; i < sum.length; i++) sum[i] *= factor;
  }

  /**
   * Clips by global norm as torch.nn.utils.clip_grad_norm_ does: when the norm exceeds maxNorm,
   * every value is scaled by maxNorm / (norm + 1e-6). Returns the norm before clipping; a
   * non-finite norm leaves the values unchanged. A maxNorm of 0 or less only measures.
   */
  clipByGlobalNorm(maxNorm: number): number {
    const norm = this.globalNorm();
    if (maxNorm > 0 && Number.isFinite(norm) && norm > maxNorm) this.scale(maxNorm / (norm + 1e-6));
    return norm;
  }

  /** Returns the accumulated gradients by parameter name, without copying (AdamW reads them in place). */
  entries(): Map<string, Float32Array> {
    return this.sums;
  }

  clear(): void {
    this.sums.clear();
  }
}
