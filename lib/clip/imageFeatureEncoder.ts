// Image features [B, embedDim] for gradient-free passes (zero-shot evaluation, forgetting), on
// onnxruntime-node when it is installed and on TF.js otherwise. Both compute encodeImage with
// the same truncation, and the tests hold them within 1e-4 of each other.
//
// The ONNX session copies the weights when it is created, so create the encoder from the
// weights to measure (after fine-tuning, not before) and dispose it when the pass ends.
import * as tf from '@tensorflow/tfjs';
import type { ClipModel } from './model.ts';
import { createOnnxImageEncoderIfEnabled } from './onnxImageEncoder.ts';

export interface ImageFeatureEncoder {
  runtime: 'onnxruntime-node' | 'tfjs';
  /** Encodes pixels [batch, 3, H, W] (flat, NCHW) and returns features [batch, embedDim] (flat, not normalised). */
  encode(pixels: Float32Array, batch: number): Promise<Float32Array>;
  dispose(): Promise<void>;
}

/** The part of ClipModel that the TF.js path uses. */
export interface ImageTower {
  encodeImage(pixels: tf.Tensor4D, options?: { truncate?: number }): tf.Tensor2D;
}

export interface ImageFeatureEncoderOptions {
  /** Vision blocks removed from the top of the tower (default 0). */
  truncate?: number;
  /** Name of the pass in the log line that states the runtime. */
  pass?: string;
}

/**
 * Creates a feature encoder from the model's current weights: onnxruntime-node unless
 * CLIPFREEZE_PREFIX_RUNTIME=tfjs or the package is missing, else TF.js.
 */
export async function createImageFeatureEncoder(model: ClipModel, options: ImageFeatureEncoderOptions = {}): Promise<ImageFeatureEncoder> {
  const truncate = options.truncate ?? 0;
  const { layers } = model.config.vision;
  if (!Number.isInteger(truncate) || truncate < 0 || truncate > layers) {
    throw new Error(`Invalid truncate = ${truncate}: expected an integer from 0 to ${layers} (the number of vision blocks).`);
  }

  const onnx = await createOnnxImageEncoderIfEnabled(model, { blocks: layers - truncate, output: 'features' }, options.pass ?? 'Image encoding');
  if (!onnx) return tfjsImageFeatureEncoder(model, model.config.vision.imageSize, truncate);
  return {
    runtime: 'onnxruntime-node',
    encode: (pixels, batch) => onnx.encode(pixels, batch),
    dispose: () => onnx.dispose(),
  };
}

/** Wraps a TF.js image tower (ClipModel or a stand-in) as a feature encoder. */
export function tfjsImageFeatureEncoder(tower: ImageTower, imageSize: number, truncate?: number): ImageFeatureEncoder {
  return {
    runtime: 'tfjs',
    async encode(pixels, batch) {
      const features = tf.tidy(() => tower.encodeImage(tf.tensor4d(pixels, [batch, 3, imageSize, imageSize]), { truncate }));
      const values = (await features.data()) as Float32Array;
      features.dispose();
      return values;
    },
    async dispose() {},
  };
}
