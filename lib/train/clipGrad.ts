// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_: when the L2 norm over
// all gradients exceeds maxNorm, every gradient is scaled by maxNorm / (norm + 1e-6).
import * as tf from '@tensorflow/tfjs';

/** Returns the L2 norm over all gradients together (NaN or Infinity when any value is). */
export function globalNorm(grads: Map<string, tf.Tensor>): number {
  let sumSquares = 0;
  for (const g of grads.values()) {
    sumSquares += tf.tidy(() => g.square().sum().dataSync()[0]);
  }
  return Math.sqrt(sumSquares);
}

/**
 * Scales the gradients in place (the map's tensors are replaced and the old ones disposed)
 * so their global norm is at most `maxNorm`. Returns the norm before clipping. A maxNorm of 0
 * or less only measures. A non-finite norm leaves the gradients as they are, so the caller
 * can stop the run.
 */
export function clipByGlobalNorm(grads: Map<string, tf.Tensor>, maxNorm: number): number {
  const norm = globalNorm(grads);
  if (maxNorm <= 0 || !Number.isFinite(norm) || norm <= maxNorm) return norm;
  const factor = maxNorm / (norm + 1e-6);
  for (const [name, g] of grads) {
    grads.set(name, tf.tidy(() => g.mul(factor)));
    g.dispose();
  }
  return norm;
}
