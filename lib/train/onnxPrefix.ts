// The frozen prefix of the image path (imagePath.ts) run by onnxruntime-node instead of TF.js.
// The prefix needs no gradients and its weights never change during a run, so it can run on
// native kernels that use every core. Its output matches runPrefix's within 1e-4 (tested on a
// small tower; about 1e-5 measured on ViT-B/32 with random weights).
//
// It is used when onnxruntime-node is installed, unless CLIPFREEZE_PREFIX_RUNTIME=tfjs.
import type { ClipModel } from '../clip/model.ts';
import { createOnnxImageEncoder, type OnnxImageEncoder } from '../clip/onnxImageEncoder.ts';
import { moduleLog } from '../util/log.ts';
import type { SplitPoint } from './imagePath.ts';

const logger = moduleLog('onnx-prefix');

export interface OnnxPrefix {
  /** Runs the prefix on pixels [batch, 3, H, W] (flat) and returns [batch, ...split.outputShape] (flat). */
  run(pixels: Float32Array, batch: number): Promise<Float32Array>;
  dispose(): Promise<void>;
}

/**
 * Creates the ONNX prefix of a split, or returns null when the plan has no frozen prefix,
 * onnxruntime-node is missing, or CLIPFREEZE_PREFIX_RUNTIME is 'tfjs'.
 */
export async function createOnnxPrefix(model: ClipModel, split: SplitPoint): Promise<OnnxPrefix | null> {
  const requested = process.env.CLIPFREEZE_PREFIX_RUNTIME ?? 'auto';
  if (!['auto', 'onnx', 'tfjs'].includes(requested)) {
    throw new Error(`Invalid CLIPFREEZE_PREFIX_RUNTIME '${requested}': expected auto, onnx or tfjs.`);
  }
  if (requested === 'tfjs' || split.start === 0) return null;

  // units[start] is the first trained unit: a block, vision.head (class token) or the head.
  const firstTrained = split.units[split.start];
  const blocks = split.units.slice(1, split.start).filter((unit) => unit.startsWith('vision.block.')).length;
  const output = firstTrained === 'head' ? 'features' : 'tokens';

  let encoder: OnnxImageEncoder;
  try {
    encoder = await createOnnxImageEncoder(model, { blocks, output });
  } catch (err) {
    if (requested === 'onnx') throw err;
    logger.info(`Frozen prefix runs on TF.js: ${(err as Error).message}`);
    return null;
  }
  logger.info(`Frozen prefix (${split.lastFrozen}) runs on onnxruntime-node`);

  const { width } = model.config.vision;
  const tokens = encoder.outputShape[0];
  return {
    async run(pixels, batch) {
      const values = await encoder.encode(pixels, batch);
      if (firstTrained !== 'vision.head') return values;

      // Before a trained vision.head, the prefix output is the class token [batch, 1, width].
      const classTokens = new Float32Array(batch * width);
      for (let i = 0; i < batch; i++) classTokens.set(values.subarray(i * tokens * width, i * tokens * width + width), i * width);
      return classTokens;
    },
    dispose: () => encoder.dispose(),
  };
}
