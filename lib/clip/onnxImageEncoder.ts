// Gradient-free image encoding with onnxruntime-node (an optional dependency), on the graph of
// onnxExport.ts. Its native kernels use every core, while the TF.js wasm backend uses one in
// Node; `npm run bench` compares the two. The weights are copied when the encoder is created,
// so an encoder serves frozen weights only: create a new one after training.
// TODO: the trainer's frozen prefix, zero-shot evaluation and the similarity strategies still
// run on TF.js; route their gradient-free passes here when onnxruntime-node is installed.
import type { ClipModel } from './model.ts';
import { exportVisionOnnx, ONNX_INPUT, ONNX_OUTPUT, type VisionOnnxOptions } from './onnxExport.ts';

// The parts of onnxruntime-node's API used here, typed locally: the package is optional (its
// install step downloads, so `npm install` drops it on a machine without internet access), and
// the project must type-check without it.
interface OrtTensor {
  data: unknown;
}
interface OrtSession {
  run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}
interface Ort {
  InferenceSession: {
    create(model: Uint8Array, options: { intraOpNumThreads: number; interOpNumThreads: number; graphOptimizationLevel: string }): Promise<OrtSession>;
  };
  Tensor: new (type: 'float32', data: Float32Array, dims: number[]) => OrtTensor;
}

const ORT_PACKAGE = 'onnxruntime-node';

export interface OnnxImageEncoder {
  /** Output shape per image: [embedDim] for features, [T, width] for tokens. */
  outputShape: number[];
  /** Encodes pixels [batch, 3, H, W] (flat, NCHW) and returns the flat output of every image. */
  encode(pixels: Float32Array, batch: number): Promise<Float32Array>;
  dispose(): Promise<void>;
}

/** Loads onnxruntime-node, or throws an error with the command that installs it. */
export async function loadOnnxRuntime(): Promise<Ort> {
  try {
    return (await import(ORT_PACKAGE)) as Ort;
  } catch (err) {
    throw new Error(`onnxruntime-node is not installed (${(err as Error).message.split('\n')[0]}). Install it with: npm install --ignore-scripts onnxruntime-node`);
  }
}

/**
 * Exports the model's image tower (all blocks, or the first `blocks`) and opens an
 * onnxruntime session on `threads` threads (default: all cores).
 */
export async function createOnnxImageEncoder(model: ClipModel, options: VisionOnnxOptions & { threads?: number } = {}): Promise<OnnxImageEncoder> {
  const ort = await loadOnnxRuntime();
  const { imageSize, patchSize, width } = model.config.vision;
  const bytes = exportVisionOnnx(model.config, model.getWeights(), options);
  const session = await ort.InferenceSession.create(bytes, {
    intraOpNumThreads: options.threads ?? 0,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  const outputShape = (options.output ?? 'features') === 'features' ? [model.config.embedDim] : [(imageSize / patchSize) ** 2 + 1, width];
  return {
    outputShape,
    async encode(pixels, batch) {
      const expected = batch * 3 * imageSize * imageSize;
      if (pixels.length !== expected) throw new Error(`Invalid pixel buffer: ${pixels.length} values, expected ${expected} for ${batch} images of 3 x ${imageSize} x ${imageSize}.`);
      const input = new ort.Tensor('float32', pixels, [batch, 3, imageSize, imageSize]);
      const result = await session.run({ [ONNX_INPUT]: input });
      return result[ONNX_OUTPUT].data as Float32Array;
    },
    async dispose() {
      await session.release();
    },
  };
}
