// Vision tower of CLIP ViT: patch embedding, class token, positions, pre-LN, residual
// blocks, post-LN of the class token and projection. Weights are read through `param`
// in the stored layout of model.ts (linear weights [in, out]).
import * as tf from '@tensorflow/tfjs';
import type { ClipConfig } from './config.ts';
import { layerNorm, matMulFast, matMulWeightGradOnly, residualBlock } from './layers.ts';
import { blockParams, type ParamLookup } from './params.ts';

/**
 * Embeds pixels [B, 3, H, W] (NCHW, normalised) into tokens [B, 1 + P, width] after ln_pre.
 *
 * The patch embedding is a stride-p convolution without bias, computed as a reshape of the
 * pixels into patch rows [B*P, 3*p*p] and one 2-D matMul with the weight stored as
 * [3*p*p, width]. This keeps it on the wasm fast path and gives the filter a gradient,
 * which the wasm Conv2D lacks.
 */
export function visionEmbed(param: ParamLookup, config: ClipConfig, pixels: tf.Tensor4D): tf.Tensor3D {
  return tf.tidy(() => {
    const { patchSize: p, width, imageSize } = config.vision;
    const [B, C, H, W] = pixels.shape;
    if (C !== 3 || H !== imageSize || W !== imageSize) {
      throw new Error(`Invalid pixel tensor shape [${pixels.shape.join(', ')}]: this model expects [batch, 3, ${imageSize}, ${imageSize}] (NCHW).`);
    }
    const grid = imageSize / p;
    const P = grid * grid;

    // [B, 3, g*p, g*p] -> [B*3*g, p, g, p] -> swap the two middle axes -> [B, 3, g*g, p*p]
    // -> [B, g*g, 3, p*p] -> [B*P, 3*p*p]: one row per patch, channel-major like conv1.weight.
    const rows = tf.transpose(tf.reshape(pixels, [B * 3 * grid, p, grid, p]), [0, 2, 1, 3]);
    const patches = tf.reshape(tf.transpose(tf.reshape(rows, [B, 3, P, p * p]), [0, 2, 1, 3]), [B * P, 3 * p * p]) as tf.Tensor2D;
    const patchTokens = tf.reshape(matMulWeightGradOnly(patches, param('visual.conv1.weight') as tf.Tensor2D), [B, P, width]);

    const classToken = tf.tile(tf.reshape(param('visual.class_embedding'), [1, 1, width]), [B, 1, 1]);
    const tokens = tf.add(tf.concat([classToken, patchTokens], 1), param('visual.positional_embedding'));
    return layerNorm(tokens, param('visual.ln_pre.weight'), param('visual.ln_pre.bias'), config.layerNormEps) as tf.Tensor3D;
  });
}

/** Applies residual block `index` of the vision transformer to x [B, T, width]. */
export function visionBlock(param: ParamLookup, config: ClipConfig, index: number, x: tf.Tensor3D): tf.Tensor3D {
  if (!Number.isInteger(index) || index < 0 || index >= config.vision.layers) {
    throw new Error(`Invalid vision block index ${index}: the model has blocks 0-${config.vision.layers - 1}.`);
  }
  return residualBlock(x, blockParams(param, `visual.transformer.resblocks.${index}.`), {
    heads: config.vision.heads,
    eps: config.layerNormEps,
    activation: config.activation,
  });
}

/** Maps tokens [B, T, width] to image features [B, embedDim]: ln_post of the class token, then proj. */
export function visionHead(param: ParamLookup, config: ClipConfig, x: tf.Tensor3D): tf.Tensor2D {
  return tf.tidy(() => {
    const [B, , width] = x.shape;
    const classToken = tf.reshape(tf.slice(x, [0, 0, 0], [B, 1, width]), [B, width]) as tf.Tensor2D;
    const normalised = layerNorm(classToken, param('visual.ln_post.weight'), param('visual.ln_post.bias'), config.layerNormEps);
    return matMulFast(normalised, param('visual.proj') as tf.Tensor2D);
  });
}
