// Prompt embeddings on onnxruntime-node, computed ahead of the zero-shot classifier and the
// forgetting class embeddings, which take them as TextFeatures. On the wasm backend the TF.js
// text tower encodes every prompt at the full 77-token context on one core. The ONNX graph
// runs on every core and cuts each batch to its longest prompt.
import { ClipModel } from '../clip/model.ts';
import { createOnnxTextEncoderIfEnabled } from '../clip/onnxTextEncoder.ts';
import type { ClipTokenizer } from '../clip/tokenizer.ts';
import { normaliseInPlace, type TextFeatures } from './zeroShot.ts';

/**
 * Encodes `texts` on onnxruntime-node to L2-normalised features, or returns null when text
 * encoding runs on TF.js (CLIPFREEZE_PREFIX_RUNTIME=tfjs, or onnxruntime-node is missing).
 */
export async function encodeTextsOnnx(model: ClipModel, tokenizer: ClipTokenizer, texts: string[], pass: string, batchSize = 64): Promise<TextFeatures | null> {
  const unique = [...new Set(texts)];
  if (unique.length === 0) return new Map();
  const encoder = await createOnnxTextEncoderIfEnabled(model, pass);
  if (!encoder) return null;

  const { contextLength } = model.config.text;
  const { embedDim } = model.config;
  const features: TextFeatures = new Map();
  try {
    for (let start = 0; start < unique.length; start += batchSize) {
      const batch = unique.slice(start, start + batchSize);
      const values = await encoder.encode(tokenizer.tokenize(batch, contextLength), batch.length);
      batch.forEach((text, i) => features.set(text, normaliseInPlace(values.slice(i * embedDim, (i + 1) * embedDim))));
    }
  } finally {
    await encoder.dispose();
  }
  return features;
}

/**
 * Returns true when `tower` is a ClipModel whose encodeText was not replaced (by a wrapper or
 * a spy, which expects its calls), so the exported weights compute what encodeText computes.
 */
export function hasOwnTextTower(tower: object): tower is ClipModel {
  return tower instanceof ClipModel && tower.encodeText === ClipModel.prototype.encodeText;
}
