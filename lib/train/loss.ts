// Binary cross-entropy with logits for multi-label findings, as
// torch.nn.BCEWithLogitsLoss(pos_weight=...) with mean reduction over images and findings:
//   loss = (1 - y) * x + (1 + (w - 1) * y) * (log(1 + exp(-|x|)) + max(-x, 0))
// which equals -[w * y * log(sigmoid(x)) + (1 - y) * log(1 - sigmoid(x))] without overflow.
import * as tf from '@tensorflow/tfjs';

/**
 * Returns the mean loss as a scalar. `logits` and `labels` are [B, F]; `posWeight` (length F)
 * weights the positive term per finding, e.g. negatives / positives in the training split.
 */
export function bceWithLogits(logits: tf.Tensor2D, labels: tf.Tensor2D, posWeight?: tf.Tensor1D | number[]): tf.Scalar {
  return tf.tidy(() => {
    const softplusNeg = tf.log1p(tf.exp(tf.abs(logits).neg())).add(tf.relu(logits.neg()));
    const negativeTerm = tf.sub(1, labels).mul(logits);
    let positiveFactor: tf.Tensor = tf.onesLike(labels);
    if (posWeight !== undefined) {
      const w = Array.isArray(posWeight) ? tf.tensor1d(posWeight) : posWeight;
      positiveFactor = labels.mul(w.sub(1)).add(1);
    }
    return negativeTerm.add(positiveFactor.mul(softplusNeg)).mean() as tf.Scalar;
  });
}

/** Returns negatives / positives per finding from 0/1 label rows; a finding without positives gets 1. */
export function positiveWeights(labels: number[][], findings: number): number[] {
  const weights: number[] = [];
  for (let f = 0; f < findings; f++) {
    const positives = labels.reduce((n, row) => n + (row[f] > 0 ? 1 : 0), 0);
    const negatives = labels.length - positives;
    weights.push(positives > 0 ? negatives / positives : 1);
  }
  return weights;
}
