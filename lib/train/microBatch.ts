// One micro-batch's forward and backward pass: the gradient of its share of the batch loss.
//
// The trainer calls this on the main thread, and lib/train/gradientWorker.ts calls it in each
// worker thread of a data-parallel step, so both compute gradients the same way.
import * as tf from '@tensorflow/tfjs';
import type { TaskHead } from './head.ts';
import type { GradientBuffer } from './gradientBuffer.ts';
import type { GradientWorkers } from './gradientWorkers.ts';
import { runSuffix, type SplitPoint, type VisionPath } from './imagePath.ts';
import { bceWithLogits } from './loss.ts';

/** A parameter whose gradient is taken, under its canonical name. */
export interface NamedVariable {
  name: string;
  variable: tf.Variable;
}

/** A micro-batch as input to the suffix: prefix output x [n, ...] and labels [n, F]. */
export interface MicroBatch {
  x: tf.Tensor;
  labels: tf.Tensor2D;
}

/**
 * Computes one micro-batch's gradients of its loss share (n / batchSize of the batch mean)
 * and adds them to `grads`, then disposes the micro-batch's tensors. Summed over the
 * micro-batches of a batch, the gradients are those of the batch's mean loss. Returns the
 * micro-batch's mean loss.
 */
export function accumulateGradients(
  model: VisionPath,
  head: TaskHead,
  split: SplitPoint,
  params: NamedVariable[],
  micro: MicroBatch,
  batchSize: number,
  posWeight: number[] | undefined,
  grads: GradientBuffer,
  afterForward?: () => void,
): number {
  const share = micro.x.shape[0] / batchSize;
  const variables = params.map((p) => p.variable);
  const names = new Map(params.map((p) => [p.variable.name, p.name]));
  const { value, grads: microGrads } = tf.variableGrads(() => {
    const logits = runSuffix(model, head, split, micro.x);
    const loss = bceWithLogits(logits, micro.labels, posWeight).mul(share) as tf.Scalar;
    // The tape keeps every forward activation here, close to the step's peak of tensor memory.
    afterForward?.();
    return loss;
  }, variables);

  const loss = value.dataSync()[0] / share;
  value.dispose();
  tf.dispose([micro.x, micro.labels]);
  for (const [variableName, g] of Object.entries(microGrads)) {
    grads.add(names.get(variableName)!, g);
    g.dispose();
  }
  return loss;
}

/** Loads one micro-batch, or returns null when every image of it was skipped. */
export type MicroBatchLoader = () => Promise<MicroBatch | null>;

export interface BatchGradientsContext {
  model: VisionPath;
  head: TaskHead;
  split: SplitPoint;
  params: NamedVariable[];
  posWeight?: number[];
  /** Worker threads that take turns with the main thread, or null for the main thread alone. */
  workers: GradientWorkers | null;
  afterForward?: () => void;
}

/**
 * Sums the gradients of a batch's micro-batches into `grads` and returns each micro-batch's
 * mean loss and image count. The micro-batches are dealt in turn to the workers, then the
 * main thread, so the workers start first and compute while the main thread computes its own.
 */
export async function batchGradients(loaders: MicroBatchLoader[], batchSize: number, context: BatchGradientsContext, grads: GradientBuffer): Promise<Array<{ loss: number; images: number }>> {
  const { workers } = context;
  const lanes = (workers?.size ?? 0) + 1;
  const losses: Array<{ loss: number; images: number }> = [];
  let dealt = 0;
  for (const load of loaders) {
    const micro = await load();
    if (!micro) continue;
    const lane = dealt++ % lanes;
    if (workers && lane < workers.size) {
      workers.submit(lane, micro, batchSize);
      continue;
    }
    const images = micro.x.shape[0];
    const loss = accumulateGradients(context.model, context.head, context.split, context.params, micro, batchSize, context.posWeight, grads, context.afterForward);
    context.afterForward?.();
    losses.push({ loss, images });
  }
  if (workers) losses.push(...(await workers.collect(grads)));
  return losses;
}
