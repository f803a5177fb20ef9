// The task head: a linear classifier over findings on L2-normalised image features,
//   logits = normalise(features) @ W + b,   W [embedDim, findings], b [findings].
// Initialised from the zero-shot classifier, W[:, f] = logitScale * (pos_f - neg_f) and b = 0,
// its sigmoid equals CLIP's two-prompt zero-shot probability, so step 0 of training starts from
// the zero-shot baseline. Random initialisation follows torch.nn.Linear: U(-1/sqrt(E), 1/sqrt(E)).
import * as tf from '@tensorflow/tfjs';
import { HEAD_PARAMS } from '../freeze/units.ts';
import { createRng } from '../util/rng.ts';

export class TaskHead {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable;

  constructor(weight: Float32Array, bias: Float32Array, embedDim: number, findings: number) {
    if (weight.length !== embedDim * findings) throw new Error(`Task head weight has ${weight.length} values, expected ${embedDim} x ${findings}.`);
    if (bias.length !== findings) throw new Error(`Task head bias has ${bias.length} values, expected ${findings}.`);
    this.weight = tf.tidy(() => tf.variable(tf.tensor2d(weight, [embedDim, findings]), true));
    this.bias = tf.tidy(() => tf.variable(tf.tensor1d(bias), true));
  }

  /** Creates the head from `linearHeadInit` of lib/eval/zeroShot.ts (row-major [E, F]). */
  static fromZeroShot(init: { weight: Float32Array; bias: Float32Array; shape: [number, number] }): TaskHead {
    return new TaskHead(init.weight, init.bias, init.shape[0], init.shape[1]);
  }

  static random(embedDim: number, findings: number, seed: number): TaskHead {
    const rng = createRng(seed);
    const bound = 1 / Math.sqrt(embedDim);
    const weight = Float32Array.from({ length: embedDim * findings }, () => (2 * rng() - 1) * bound);
    const bias = Float32Array.from({ length: findings }, () => (2 * rng() - 1) * bound);
    return new TaskHead(weight, bias, embedDim, findings);
  }

  /** Maps image features [B, E] (not normalised) to logits [B, F]. */
  apply(features: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      // The small epsilon keeps the gradient finite for an all-zero feature row.
      const norm = tf.sqrt(tf.sum(tf.square(features), 1, true).add(1e-12));
      return tf.add(tf.matMul(tf.div(features, norm), this.weight), this.bias) as tf.Tensor2D;
    });
  }

  /** Returns the head's variables under their parameter names. */
  variables(): Map<string, tf.Variable> {
    return new Map([
      [HEAD_PARAMS.weight, this.weight],
      [HEAD_PARAMS.bias, this.bias],
    ]);
  }

  dispose(): void {
    this.weight.dispose();
    this.bias.dispose();
  }
}
