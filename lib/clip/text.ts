// Text tower of CLIP: token and position embeddings, causal residual blocks, final LN,
// pooling at the end-of-text token and projection.
import * as tf from '@tensorflow/tfjs';
import type { ClipConfig } from './config.ts';
import { gatherRows, layerNorm, matMulFast, residualBlock } from './layers.ts';
import { blockParams, type ParamLookup } from './params.ts';

/** Embeds token ids [N, contextLength] (int32) into [N, contextLength, width]. */
export function textEmbed(param: ParamLookup, config: ClipConfig, ids: tf.Tensor2D): tf.Tensor3D {
  return tf.tidy(() => {
    const [N, T] = ids.shape;
    const { contextLength, width } = config.text;
    if (T !== contextLength) throw new Error(`Invalid token id tensor shape [${ids.shape.join(', ')}]: this model expects [N, ${contextLength}].`);
    checkVocabulary(ids, config.text.vocabSize);

    const tokens = tf.reshape(gatherRows(param('token_embedding.weight') as tf.Tensor2D, tf.reshape(ids, [N * T]) as tf.Tensor1D), [N, T, width]);
    return tf.add(tokens, param('positional_embedding')) as tf.Tensor3D;
  });
}

/** Throws when an id is outside [0, vocabSize), naming the row and the fix (tf.gather names only the index). */
function checkVocabulary(ids: tf.Tensor2D, vocabSize: number): void {
  const values = ids.dataSync();
  for (let i = 0; i < values.length; i++) {
    if (!(values[i] >= 0 && values[i] < vocabSize)) {
      const row = Math.floor(i / ids.shape[1]);
      throw new Error(`Invalid token id ${values[i]} in row ${row}: the vocabulary has ids 0-${vocabSize - 1}. Tokenize with this checkpoint's tokenizer.`);
    }
  }
}

/**
 * Applies causal residual block `index` of the text transformer to x [N, T, width].
 * `mask` is the additive causal mask [T, T] (layers.causalMask).
 */
export function textBlock(param: ParamLookup, config: ClipConfig, index: number, x: tf.Tensor3D, mask: tf.Tensor2D): tf.Tensor3D {
  if (!Number.isInteger(index) || index < 0 || index >= config.text.layers) {
    throw new Error(`Invalid text block index ${index}: the model has blocks 0-${config.text.layers - 1}.`);
  }
  return residualBlock(x, blockParams(param, `transformer.resblocks.${index}.`), {
    heads: config.text.heads,
    eps: config.layerNormEps,
    activation: config.activation,
    mask,
  });
}

/**
 * Returns, for each row of ids [N, T], the flat row index n*T + t of its end-of-text token.
 * The end-of-text token has the highest id in CLIP's vocabulary, so t = argmax of the row
 * (the first maximum, as torch.argmax returns).
 */
export function endOfTextRows(ids: tf.Tensor2D): Int32Array {
  const [N, T] = ids.shape;
  const values = ids.dataSync();
  const rows = new Int32Array(N);
  for (let n = 0; n < N; n++) {
    let best = 0;
    for (let t = 1; t < T; t++) if (values[n * T + t] > values[n * T + best]) best = t;
    rows[n] = n * T + best;
  }
  return rows;
}

/** Maps tokens [N, T, width] to text features [N, embedDim]: ln_final at the end-of-text token, then text_projection. */
export function textHead(param: ParamLookup, config: ClipConfig, x: tf.Tensor3D, ids: tf.Tensor2D): tf.Tensor2D {
  const rows = endOfTextRows(ids);
  return tf.tidy(() => {
    const [N, T, width] = x.shape;
    // ln_final acts on each token separately, so normalising only the pooled tokens equals
    // the reference's normalise-all-then-pool.
    const pooled = gatherRows(tf.reshape(x, [N * T, width]) as tf.Tensor2D, tf.tensor1d(rows, 'int32'));
    const normalised = layerNorm(pooled, param('ln_final.weight'), param('ln_final.bias'), config.layerNormEps);
    return matMulFast(normalised, param('text_projection') as tf.Tensor2D);
  });
}
