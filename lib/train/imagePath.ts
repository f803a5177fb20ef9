// The image-classification path under a freeze plan, split at the first trained unit:
//
//   pixels -> vision.embed -> vision.block.0 .. vision.block.L-1 -> vision.head -> head -> logits
//             |------------ frozen prefix ------------|------- inside the gradient tape -------|
//
// L = layers - truncate. The prefix runs outside the gradient tape (no activations kept for
// backward) and, because its weights never change, its output can be cached per image.
// Its output is the smallest tensor the suffix needs: tokens [B, T, W] before a trained block,
// the class token [B, 1, W] before a trained vision.head, image features [B, E] before the head.
import * as tf from '@tensorflow/tfjs';
import type { ClipModel } from '../clip/model.ts';
import type { FreezePlan } from '../freeze/plan.ts';
import type { TaskHead } from './head.ts';

/** The image tower's stages, as ClipModel and a data-parallel worker's weight copy provide them. */
export type VisionPath = Pick<ClipModel, 'visionEmbed' | 'visionBlock' | 'visionHead'>;

export interface SplitPoint {
  /** Units of the path in forward order. */
  units: string[];
  /** Index in `units` of the first trained unit: the prefix is units[0 .. start-1]. */
  start: number;
  /** Name of the last frozen unit of the prefix, or null when vision.embed trains. */
  lastFrozen: string | null;
  /** Shape of the prefix output per image. */
  outputShape: number[];
}

export function splitPoint(model: ClipModel, plan: FreezePlan): SplitPoint {
  const { layers, width, imageSize, patchSize } = model.config.vision;
  const kept = layers - plan.truncate;
  const units = ['vision.embed'];
  for (let i = 0; i < kept; i++) units.push(`vision.block.${i}`);
  units.push('vision.head', 'head');

  const trained = new Set(plan.train);
  const start = units.findIndex((u) => trained.has(u));
  if (start < 0) throw new Error(`The freeze plan trains no unit on the image path (${units.join(', ')}).`);

  const tokens = (imageSize / patchSize) ** 2 + 1;
  let outputShape: number[];
  if (units[start] === 'head') outputShape = [model.config.embedDim];
  else if (units[start] === 'vision.head') outputShape = [1, width];
  else outputShape = start === 0 ? [3, imageSize, imageSize] : [tokens, width];
  return { units, start, lastFrozen: start === 0 ? null : units[start - 1], outputShape };
}

/** Runs the frozen prefix on pixels [B, 3, H, W] (call outside the gradient tape). */
export function runPrefix(model: ClipModel, split: SplitPoint, pixels: tf.Tensor4D): tf.Tensor {
  return tf.tidy(() => {
    if (split.start === 0) return pixels.clone();
    let x = model.visionEmbed(pixels);
    for (let i = 1; i < split.start; i++) {
      const unit = split.units[i];
      if (unit === 'vision.head') return model.visionHead(x);
      x = model.visionBlock(blockIndex(unit), x);
    }
    if (split.units[split.start] === 'vision.head') {
      const [B, , W] = x.shape;
      return tf.slice(x, [0, 0, 0], [B, 1, W]);
    }
    return x;
  });
}

/** Runs the rest of the path on the prefix output and returns logits [B, F]. */
export function runSuffix(model: VisionPath, head: TaskHead, split: SplitPoint, x: tf.Tensor): tf.Tensor2D {
  return tf.tidy(() => {
    let h: tf.Tensor = x;
    for (let i = split.start; i < split.units.length; i++) {
      const unit = split.units[i];
      if (unit === 'vision.embed') h = model.visionEmbed(h as tf.Tensor4D);
      else if (unit === 'vision.head') h = model.visionHead(h as tf.Tensor3D);
      else if (unit === 'head') h = head.apply(h as tf.Tensor2D);
      else h = model.visionBlock(blockIndex(unit), h as tf.Tensor3D);
    }
    return h as tf.Tensor2D;
  });
}

function blockIndex(unit: string): number {
  return Number(unit.slice('vision.block.'.length));
}
