// Transformer building blocks shared by the vision and text towers.
//
// Speed on the TF.js 4.22 wasm backend shapes this file. Only a plain 2-D matMul without
// transpose flags is fast (22 GFLOP/s of CPU time in bench/linear.ts), while batched or
// transposed matMuls run at 1-3 GFLOP/s. So every linear layer is a 2-D [rows, in] x
// [in, out] product with the weight stored as [in, out], and its gradient (matMulFast)
// transposes explicitly before plain matMuls instead of passing transpose flags.
import * as tf from '@tensorflow/tfjs';

/**
 * Computes x [N, in] @ w [in, out] with a gradient made of plain 2-D matMuls:
 * dX = dY @ transpose(W) and dW = transpose(X) @ dY. TF.js's built-in gradient calls matMul
 * with transposeA/transposeB, which leaves the fast path, and the explicit tf.transpose
 * copies cost far less. bench/linear.ts (ViT-B/32 MLP layer, batch 16, wasm, 2-core shared
 * VM) measured forward and backward at 522 ms CPU with this gradient and 8081 ms without.
 *
 * When w is a tf.Variable with `trainable = false` (a frozen layer), dW is returned as zeros
 * without the product, so backpropagating through frozen layers costs only dX.
 */
export const matMulFast = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [x, w, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
  const frozen = w instanceof tf.Variable && !w.trainable;
  save([x, w]);
  return {
    value: tf.matMul(x, w),
    gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
      const [xs, ws] = saved as tf.Tensor2D[];
      const dx = tf.matMul(dy, tf.transpose(ws));
      const dw = frozen ? tf.zerosLike(ws) : tf.matMul(tf.transpose(xs), dy);
      return [dx, dw];
    },
  };
}) as (x: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor2D;

/**
 * Like matMulFast, but returns a zero gradient for x. Used where x is an input that never
 * needs a gradient (the pixel patches), which saves one [N, out] x [out, in] product.
 */
export const matMulWeightGradOnly = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [x, w, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
  save([x]);
  return {
    value: tf.matMul(x, w),
    gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
      const [xs] = saved as tf.Tensor2D[];
      return [tf.zerosLike(xs), tf.matMul(tf.transpose(xs), dy)];
    },
  };
}) as (x: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor2D;

/**
 * Returns rows `indices` [M] (int32) of table [V, W] as [M, W]. TF.js's gather gradient
 * needs UnsortedSegmentSum, which the wasm backend lacks, so the gradient here scatters
 * dY into a [V, W] zero matrix with scatterND, which sums rows of repeated indices.
 */
export const gatherRows = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [table, indices, save] = args as [tf.Tensor2D, tf.Tensor1D, tf.GradSaveFunc];
  save([indices]);
  const shape = table.shape;
  return {
    value: tf.gather(table, indices) as tf.Tensor2D,
    gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
      const [savedIndices] = saved as tf.Tensor1D[];
      const dTable = tf.scatterND(tf.reshape(savedIndices, [-1, 1]), dy, shape);
      return [dTable, tf.zerosLike(savedIndices)];
    },
  };
}) as (table: tf.Tensor2D, indices: tf.Tensor1D) => tf.Tensor2D;

/** Linear layer on 2-D input: x [N, in] @ w [in, out] + b [out]. */
export function linear(x: tf.Tensor2D, w: tf.Tensor, b: tf.Tensor): tf.Tensor2D {
  return tf.add(matMulFast(x, w as tf.Tensor2D), b);
}

/** Layer normalisation over the last axis with biased variance, as torch.nn.LayerNorm. */
export function layerNorm<T extends tf.Tensor>(x: T, gamma: tf.Tensor, beta: tf.Tensor, eps: number): T {
  return tf.tidy(() => {
    const mean = tf.mean(x, -1, true);
    const centered = tf.sub(x, mean);
    const variance = tf.mean(tf.square(centered), -1, true);
    const normalised = tf.mul(centered, tf.rsqrt(tf.add(variance, eps)));
    return tf.add(tf.mul(normalised, gamma), beta) as T;
  });
}

/** QuickGELU, x * sigmoid(1.702 x): the activation OpenAI CLIP was trained with. */
export function quickGelu<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(tf.mul(x, 1.702))) as T);
}

/** Exact GELU, x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), as torch.nn.GELU. */
export function gelu<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))) as T);
}

export type Activation = 'quick_gelu' | 'gelu';

/** Parameters of one residual attention block, in the stored layout ([in, out] weights). */
export interface BlockParams {
  ln1Gamma: tf.Tensor;
  ln1Beta: tf.Tensor;
  inProjWeight: tf.Tensor; // [W, 3W]: columns are q, k, v
  inProjBias: tf.Tensor; // [3W]
  outProjWeight: tf.Tensor; // [W, W]
  outProjBias: tf.Tensor; // [W]
  ln2Gamma: tf.Tensor;
  ln2Beta: tf.Tensor;
  fcWeight: tf.Tensor; // [W, mlpDim]
  fcBias: tf.Tensor;
  projWeight: tf.Tensor; // [mlpDim, W]
  projBias: tf.Tensor;
}

export interface BlockOptions {
  heads: number;
  eps: number;
  activation: Activation;
  /** Additive attention mask [T, T] (0 or a large negative number), e.g. causal for text. */
  mask?: tf.Tensor2D;
}

/**
 * Pre-LN residual block as in CLIP: x + attn(ln_1(x)), then x + mlp(ln_2(x)).
 * x is [B, T, W]. Intermediates are released when the block returns.
 */
export function residualBlock(x: tf.Tensor3D, p: BlockParams, options: BlockOptions): tf.Tensor3D {
  return tf.tidy(() => {
    const [B, T, W] = x.shape;
    // All linear layers work on the [B*T, W] view, so each one is a single 2-D matMul.
    const x2d = tf.reshape(x, [B * T, W]) as tf.Tensor2D;

    const attnIn = layerNorm(x2d, p.ln1Gamma, p.ln1Beta, options.eps);
    const attnOut = multiHeadAttention(attnIn, B, T, options.heads, p, options.mask);
    const afterAttn = tf.add(x2d, attnOut) as tf.Tensor2D;

    const mlpIn = layerNorm(afterAttn, p.ln2Gamma, p.ln2Beta, options.eps);
    const hidden = linear(mlpIn, p.fcWeight, p.fcBias);
    const activated = options.activation === 'quick_gelu' ? quickGelu(hidden) : gelu(hidden);
    const mlpOut = linear(activated, p.projWeight, p.projBias);
    return tf.reshape(tf.add(afterAttn, mlpOut), [B, T, W]) as tf.Tensor3D;
  });
}

/**
 * Multi-head self-attention on x [B*T, W] (rows grouped by sequence); returns [B*T, W].
 *
 * The q/k/v and output projections are 2-D matMuls on the fast path. The per-head products
 * QK^T and PV are batched over B*heads and stay on the slow path. That costs little because
 * T is small (50 image tokens for ViT-B/32, 77 text tokens). They are 4 T^2 W of the
 * 24 T W^2 + 4 T^2 W FLOPs of a block, about 1% for ViT-B/32.
 *
 * Formulation: split q, k, v by columns and reshape each with a rank-4 transpose, k directly
 * to [B, H, d, T] so that QK^T needs no transpose flag. bench/attention.ts timed the core
 * (forward and backward, ViT-B/32 sizes, batch 16, wasm, 2-core shared VM, CPU time):
 * this 231 ms; a rank-5 transpose with unstack 472 ms (445 ms with k pre-transposed); the
 * same with a custom explicit-transpose gradient for the batched matMuls 265 ms; one 2-D
 * matMul per image and head 648 ms.
 */
export function multiHeadAttention(x: tf.Tensor2D, B: number, T: number, heads: number, p: BlockParams, mask?: tf.Tensor2D): tf.Tensor2D {
  const W = x.shape[1];
  const headDim = W / heads;
  const qkv = linear(x, p.inProjWeight, p.inProjBias); // [B*T, 3W], columns q | k | v
  const [qRows, kRows, vRows] = tf.split(qkv, 3, 1);
  const toHeads = (rows: tf.Tensor, perm: number[]) => tf.transpose(tf.reshape(rows, [B, T, heads, headDim]), perm) as tf.Tensor4D;
  const q = toHeads(qRows, [0, 2, 1, 3]); // [B, H, T, d]
  const kTransposed = toHeads(kRows, [0, 2, 3, 1]); // [B, H, d, T]
  const v = toHeads(vRows, [0, 2, 1, 3]); // [B, H, T, d]

  // Scale q before the product, like torch.nn.MultiheadAttention.
  let scores = tf.matMul(tf.mul(q, 1 / Math.sqrt(headDim)), kTransposed); // [B, H, T, T]
  if (mask) scores = tf.add(scores, mask);
  const probs = tf.softmax(scores);
  const context = tf.matMul(probs, v); // [B, H, T, d]

  const merged = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [B * T, W]) as tf.Tensor2D;
  return linear(merged, p.outProjWeight, p.outProjBias);
}

/** Returns the additive causal mask [T, T]: 0 on and below the diagonal, -1e9 above. */
export function causalMask(T: number): tf.Tensor2D {
  const values = new Float32Array(T * T);
  for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) values[i * T + j] = -1e9;
  return tf.tensor2d(values, [T, T]);
}
