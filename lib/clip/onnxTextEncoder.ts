// Gradient-free text encoding with onnxruntime-node, on the text-tower graph of onnxExport.ts:
// prompt embeddings for zero-shot classifiers and forgetting. The attention is causal, so a
// row's features depend only on its tokens up to the end-of-text token. Each batch is cut to
// its longest prompt, which for short prompts skips most of the 77-token context.
import type { ClipModel } from './model.ts';
import { exportTextOnnx, ONNX_OUTPUT, ONNX_TEXT_INPUT } from './onnxExport.ts';
import { onnxOrNull, openOnnxSession } from './onnxImageEncoder.ts';

export interface OnnxTextEncoder {
  /** Encodes token ids row-major [n, contextLength] and returns text features [n, embedDim] (flat, not normalised). */
  encode(ids: Int32Array, n: number): Promise<Float32Array>;
  dispose(): Promise<void>;
}

/** Exports the model's text tower and opens an onnxruntime session on `threads` threads (default: all cores). */
export async function createOnnxTextEncoder(model: ClipModel, options: { threads?: number } = {}): Promise<OnnxTextEncoder> {
  const { contextLength } = model.config.text;
  const { ort, session } = await openOnnxSession(() => exportTextOnnx(model.config, model.getWeights()), options.threads);
  return {
    async encode(ids, n) {
      if (ids.length !== n * contextLength) throw new Error(`Invalid token id buffer: ${ids.length} values, expected ${n} rows of ${contextLength}.`);
      const length = usedLength(ids, n, contextLength);
      const trimmed = new Int32Array(n * length);
      for (let row = 0; row < n; row++) trimmed.set(ids.subarray(row * contextLength, row * contextLength + length), row * length);
      const result = await session.run({ [ONNX_TEXT_INPUT]: new ort.Tensor('int32', trimmed, [n, length]) });
      return result[ONNX_OUTPUT].data as Float32Array;
    },
    async dispose() {
      await session.release();
    },
  };
}

/** Creates an ONNX text encoder for a gradient-free pass, or returns null as onnxOrNull() does. */
export async function createOnnxTextEncoderIfEnabled(model: ClipModel, pass: string): Promise<OnnxTextEncoder | null> {
  return onnxOrNull(() => createOnnxTextEncoder(model), pass);
}

/**
 * Returns the number of leading tokens that covers the end-of-text token of every row: one
 * past the largest position of a row's highest id (its first occurrence, as the pooling takes).
 */
function usedLength(ids: Int32Array, n: number, contextLength: number): number {
  let length = 1;
  for (let row = 0; row < n; row++) {
    const offset = row * contextLength;
    let best = 0;
    for (let t = 1; t < contextLength; t++) if (ids[offset + t] > ids[offset + best]) best = t;
    length = Math.max(length, best + 1);
  }
  return length;
}
