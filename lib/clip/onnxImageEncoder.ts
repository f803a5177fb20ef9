// Gradient-free image encoding with onnxruntime-node (an optional dependency), on the graph of
// onnxExport.ts. Its native kernels use every core, while the TF.js wasm backend uses one in
// Node; `npm run bench` compares the two. The weights are copied when the encoder is created,
// so an encoder serves the weights of that moment only: create a new one after training.
//
// Callers: the trainer's frozen prefix (train/onnxPrefix.ts), zero-shot evaluation, the
// forgetting measurement (clip/imageFeatureEncoder.ts) and the similarity strategy's unit
// activations. The text tower has its own encoder (onnxTextEncoder.ts).
// CLIPFREEZE_PREFIX_RUNTIME selects the runtime for all of them.
// TODO: in the trainer's validation and test passes, the trained suffix of the tower still runs
// on TF.js. Its weights change every epoch, so ONNX there needs a fresh export per evaluation.
import type { ClipModel } from './model.ts';
import { exportVisionOnnx, ONNX_INPUT, ONNX_OUTPUT, unitOutputNames, type VisionOnnxOptions } from './onnxExport.ts';
import { moduleLog } from '../util/log.ts';

const logger = moduleLog('onnx');

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
  Tensor: {
    new (type: 'float32', data: Float32Array, dims: number[]): OrtTensor;
    new (type: 'int32', data: Int32Array, dims: number[]): OrtTensor;
  };
}

/** An onnxruntime session with the module that created it (for its Tensor class). */
export interface OnnxSession {
  ort: Ort;
  session: OrtSession;
}

const ORT_PACKAGE = 'onnxruntime-node';

/** Environment variable that selects the runtime of every gradient-free pass, image or text. */
export const RUNTIME_VARIABLE = 'CLIPFREEZE_PREFIX_RUNTIME';

/** 'auto' uses onnxruntime-node when it loads, 'onnx' requires it, 'tfjs' never uses it. */
export type RuntimeRequest = 'auto' | 'onnx' | 'tfjs';

/** Thrown when onnxruntime-node cannot be imported. */
export class OnnxRuntimeMissingError extends Error {}

export interface OnnxImageEncoder {
  /** Output shape per image of the first output: [embedDim] for features, [T, width] for tokens. */
  outputShape: number[];
  /** Every output of the graph with its shape per image, in graph order. */
  outputs: Array<{ name: string; shape: number[] }>;
  /** Encodes pixels [batch, 3, H, W] (flat, NCHW) and returns the flat first output of every image. */
  encode(pixels: Float32Array, batch: number): Promise<Float32Array>;
  /** Encodes pixels like encode() and returns every output by name, each flat [batch, ...shape]. */
  encodeAll(pixels: Float32Array, batch: number): Promise<Map<string, Float32Array>>;
  dispose(): Promise<void>;
}

/** Reads CLIPFREEZE_PREFIX_RUNTIME (default 'auto'), or throws naming the invalid value. */
export function requestedRuntime(): RuntimeRequest {
  const requested = process.env[RUNTIME_VARIABLE] ?? 'auto';
  if (requested !== 'auto' && requested !== 'onnx' && requested !== 'tfjs') {
    throw new Error(`Invalid ${RUNTIME_VARIABLE} '${requested}': expected auto, onnx or tfjs.`);
  }
  return requested;
}

/** Loads onnxruntime-node, or throws an error with the command that installs it. */
export async function loadOnnxRuntime(): Promise<Ort> {
  try {
    return (await import(ORT_PACKAGE)) as Ort;
  } catch (err) {
    throw new OnnxRuntimeMissingError(
      `onnxruntime-node is not installed (${(err as Error).message.split('\n')[0]}). Install it with: ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node`,
    );
  }
}

/**
 * Exports the model's image tower (all blocks, or the first `blocks`) and opens an
 * onnxruntime session on `threads` threads (default: all cores).
 */
export async function createOnnxImageEncoder(model: ClipModel, options: VisionOnnxOptions & { threads?: number } = {}): Promise<OnnxImageEncoder> {
  const { imageSize, patchSize, width } = model.config.vision;
  const output = options.output ?? 'features';
  const { ort, session } = await openOnnxSession(() => exportVisionOnnx(model.config, model.getWeights(), options), options.threads);

  let outputs: Array<{ name: string; shape: number[] }>;
  if (output === 'units') outputs = unitOutputNames(model.config, options.blocks);
  else if (output === 'features') outputs = [{ name: ONNX_OUTPUT, shape: [model.config.embedDim] }];
  else outputs = [{ name: ONNX_OUTPUT, shape: [(imageSize / patchSize) ** 2 + 1, width] }];

  const run = async (pixels: Float32Array, batch: number): Promise<Record<string, OrtTensor>> => {
    const expected = batch * 3 * imageSize * imageSize;
    if (pixels.length !== expected) throw new Error(`Invalid pixel buffer: ${pixels.length} values, expected ${expected} for ${batch} images of 3 x ${imageSize} x ${imageSize}.`);
    return session.run({ [ONNX_INPUT]: new ort.Tensor('float32', pixels, [batch, 3, imageSize, imageSize]) });
  };
  return {
    outputShape: outputs[0].shape,
    outputs,
    async encode(pixels, batch) {
      const result = await run(pixels, batch);
      return result[outputs[0].name].data as Float32Array;
    },
    async encodeAll(pixels, batch) {
      const result = await run(pixels, batch);
      return new Map(outputs.map(({ name }) => [name, result[name].data as Float32Array]));
    },
    async dispose() {
      await session.release();
    },
  };
}

/** Loads onnxruntime-node, builds the model bytes and opens a session on `threads` threads (default: all cores). */
export async function openOnnxSession(buildModel: () => Uint8Array, threads = 0): Promise<OnnxSession> {
  const ort = await loadOnnxRuntime();
  const session = await ort.InferenceSession.create(buildModel(), {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  return { ort, session };
}

/** Creates an ONNX image encoder for a gradient-free pass, or returns null as onnxOrNull() does. */
export async function createOnnxImageEncoderIfEnabled(model: ClipModel, options: VisionOnnxOptions & { threads?: number }, pass: string): Promise<OnnxImageEncoder | null> {
  return onnxOrNull(() => createOnnxImageEncoder(model, options), pass);
}

/**
 * Runs `create` (an ONNX encoder for a gradient-free pass), or returns null when the pass
 * should run on TF.js: CLIPFREEZE_PREFIX_RUNTIME is 'tfjs', or it is 'auto' and
 * onnxruntime-node is missing or the session cannot be created (logged). With 'onnx', those
 * failures throw.
 */
export async function onnxOrNull<T>(create: () => Promise<T>, pass: string): Promise<T | null> {
  const requested = requestedRuntime();
  if (requested === 'tfjs') return null;
  try {
    const encoder = await create();
    logger.info(`${pass} runs on onnxruntime-node`);
    return encoder;
  } catch (err) {
    if (requested === 'onnx') throw err;
    const message = (err as Error).message;
    if (err instanceof OnnxRuntimeMissingError) logger.info(`${pass} runs on TF.js: ${message}`);
    else logger.warn(`${pass} runs on TF.js because the onnxruntime-node session failed: ${message}`);
    return null;
  }
}
