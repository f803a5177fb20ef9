// Gradients of a batch loss accumulated over micro-batches, so that a batch whose backward pass
// does not fit the TF.js heap can still be measured or trained on. With the mean loss of each
// micro-batch weighted by its share of the batch, the sum of the micro-batch gradients equals
// the gradient of the whole batch's mean loss.
import * as tf from '@tensorflow/tfjs';

/** One micro-batch: a loss closure and its weight (its share of the batch's images). */
export interface WeightedLoss {
  loss: () => tf.Scalar;
  weight: number;
}

/**
 * Returns the weighted sum of the losses and of their gradients with respect to `params`
 * (canonical name to variable). Parameters that no loss depends on have no entry. The caller
 * disposes the returned gradients.
 */
export function accumulateGradients(params: Map<string, tf.Variable>, parts: WeightedLoss[]): { loss: number; grads: Map<string, tf.Tensor> } {
  const names = [...params.keys()];
  const varList = names.map((name) => params.get(name)!);
  const sums = new Map<string, tf.Tensor>();
  let loss = 0;

  for (const part of parts) {
    const { value, grads } = tf.variableGrads(part.loss, varList);
    loss += part.weight * value.dataSync()[0];
    value.dispose();
    for (const name of names) {
      const grad = grads[params.get(name)!.name];
      if (!grad) continue;
      const previous = sums.get(name);
      sums.set(name, tf.tidy(() => (previous ? previous.add(grad.mul(part.weight)) : grad.mul(part.weight))));
      previous?.dispose();
    }
    for (const g of Object.values(grads)) g.dispose();
  }
  return { loss, grads: sums };
}

export function disposeGradients(grads: Map<string, tf.Tensor>): void {
  for (const g of grads.values()) g.dispose();
}
