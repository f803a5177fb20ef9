// CLIP ViT in TF.js, a port of openai/CLIP clip/model.py. The tests compare its outputs,
// per-block hidden states and gradients with that reference.
//
// Every step of both towers is a public method (embed, one block, head), so layer-selection
// strategies can read any block's output and truncation can stop early. Parameters live in
// `params` under canonical OpenAI names; see params.ts for the stored layout.
import * as tf from '@tensorflow/tfjs';
import { canonicalShapes } from './checkpointLayouts.ts';
import { loadCheckpoint, type Checkpoint, type CheckpointTensor, type LoadCheckpointOptions } from './checkpoint.ts';
import { validateConfig, type ClipConfig } from './config.ts';
import { causalMask } from './layers.ts';
import { storedShape, toCanonical, toStored } from './params.ts';
import { formatShape } from './safetensors.ts';
import { textBlock, textEmbed, textHead } from './text.ts';
import { visionBlock, visionEmbed, visionHead } from './vision.ts';
import { createRng, type Rng } from '../util/rng.ts';

/** Pixels NCHW [B, 3, H, W], as a tensor or as flat row-major values. */
export type PixelInput = tf.Tensor4D | Float32Array;
/** Token ids [N, contextLength], as an int32 tensor, flat values or rows. */
export type TokenInput = tf.Tensor2D | Int32Array | number[][];

/**
 * Called after each residual block with its output x [B, T, width]. x is valid only during
 * the call: to keep something, compute it inside the callback and tf.keep the result.
 */
export type BlockCallback = (index: number, x: tf.Tensor3D) => void;

export interface EncodeImageOptions {
  /** Number of final vision blocks to skip (0 = full model). */
  truncate?: number;
  onBlock?: BlockCallback;
}

export interface EncodeTextOptions {
  onBlock?: BlockCallback;
}

export interface ClipOutputs {
  /** [B, embedDim], before normalisation. */
  imageFeatures: tf.Tensor2D;
  /** [N, embedDim], before normalisation. */
  textFeatures: tf.Tensor2D;
  /** [B, N]: logit scale times the cosine similarity of each image with each text. */
  logitsPerImage: tf.Tensor2D;
  /** [N, B]: the transpose of logitsPerImage. */
  logitsPerText: tf.Tensor2D;
}

let modelCount = 0;

export class ClipModel {
  readonly config: ClipConfig;
  /** Trainable variables by canonical name, in the stored layout of params.ts. */
  readonly params: Map<string, tf.Variable>;
  private readonly shapes: Map<string, number[]>;
  private readonly textMask: tf.Tensor2D;

  /** Creates a model from canonical weights; every canonical parameter must be present. */
  constructor(config: ClipConfig, weights: Map<string, CheckpointTensor>) {
    validateConfig(config);
    this.config = config;
    this.shapes = canonicalShapes(config);
    this.params = new Map();
    const id = modelCount++;
    for (const [name, shape] of this.shapes) {
      const tensor = weights.get(name);
      if (!tensor) throw new Error(`Cannot build the CLIP model: weight '${name}' (shape ${formatShape(shape)}) is missing.`);
      checkShape(name, tensor, shape);
      const stored = tf.tensor(toStored(name, shape, tensor.data), storedShape(name, shape), 'float32');
      this.params.set(name, tf.variable(stored, true, `clip${id}/${name}`));
      stored.dispose();
    }
    this.textMask = tf.keep(causalMask(config.text.contextLength));
  }

  /** Loads a checkpoint (see checkpoint.ts) and builds the model. */
  static async load(checkpointPath: string, options: LoadCheckpointOptions = {}): Promise<{ model: ClipModel; checkpoint: Checkpoint }> {
    const checkpoint = loadCheckpoint(checkpointPath, options);
    return { model: new ClipModel(checkpoint.config, checkpoint.weights), checkpoint };
  }

  /**
   * Creates a model with random weights, initialised like openai/CLIP's
   * initialize_parameters (normal with width-dependent std, LayerNorm 1/0, biases 0,
   * logit scale log(1/0.07)). The same seed gives the same weights.
   */
  static random(config: ClipConfig, seed = 0): ClipModel {
    const weights = new Map<string, CheckpointTensor>();
    let index = 0;
    for (const [name, shape] of canonicalShapes(config)) {
      const size = shape.reduce((a, b) => a * b, 1);
      const std = initStd(config, name);
      let data: Float32Array;
      if (std === 'one') data = new Float32Array(size).fill(1);
      else if (std === 'zero') data = new Float32Array(size);
      else if (std === 'logit') data = new Float32Array([Math.log(1 / 0.07)]);
      else data = normalSamples(size, std, createRng(seed * 100_003 + index));
      weights.set(name, { shape, data });
      index++;
    }
    return new ClipModel(config, weights);
  }

  /** Returns the PyTorch shape of a canonical parameter. */
  canonicalShape(name: string): number[] {
    const shape = this.shapes.get(name);
    if (!shape) throw new Error(`Unknown CLIP parameter '${name}'.`);
    return [...shape];
  }

  /** Counts all parameters, or those whose canonical name starts with `prefix`. */
  parameterCount(prefix = ''): number {
    let total = 0;
    for (const [name, variable] of this.params) if (name.startsWith(prefix)) total += variable.size;
    return total;
  }

  /** Embeds pixels [B, 3, H, W] into tokens [B, 1 + P, width] after ln_pre. */
  visionEmbed(pixels: PixelInput): tf.Tensor3D {
    return tf.tidy(() => visionEmbed(this.param, this.config, this.pixelTensor(pixels)));
  }

  /** Applies vision residual block `index` to x [B, T, width]. */
  visionBlock(index: number, x: tf.Tensor3D): tf.Tensor3D {
    return visionBlock(this.param, this.config, index, x);
  }

  /** Maps tokens [B, T, width] to image features [B, embedDim]. */
  visionHead(x: tf.Tensor3D): tf.Tensor2D {
    return visionHead(this.param, this.config, x);
  }

  /** Encodes pixels into image features [B, embedDim] (not normalised), skipping the last `truncate` blocks. */
  encodeImage(pixels: PixelInput, options: EncodeImageOptions = {}): tf.Tensor2D {
    const truncate = options.truncate ?? 0;
    const layers = this.config.vision.layers;
    if (!Number.isInteger(truncate) || truncate < 0 || truncate > layers) {
      throw new Error(`Invalid truncate = ${truncate}: expected an integer from 0 to ${layers} (the number of vision blocks).`);
    }
    return tf.tidy(() => {
      let x = this.visionEmbed(pixels);
      for (let i = 0; i < layers - truncate; i++) {
        x = this.visionBlock(i, x);
        options.onBlock?.(i, x);
      }
      return this.visionHead(x);
    });
  }

  /** Embeds token ids [N, contextLength] into [N, contextLength, width]. */
  textEmbed(ids: TokenInput): tf.Tensor3D {
    return tf.tidy(() => textEmbed(this.param, this.config, this.idsTensor(ids)));
  }

  /** Applies causal text residual block `index` to x [N, T, width]. */
  textBlock(index: number, x: tf.Tensor3D): tf.Tensor3D {
    return textBlock(this.param, this.config, index, x, this.textMask);
  }

  /** Maps tokens [N, T, width] to text features [N, embedDim], pooled at each row's end-of-text token. */
  textHead(x: tf.Tensor3D, ids: TokenInput): tf.Tensor2D {
    return tf.tidy(() => textHead(this.param, this.config, x, this.idsTensor(ids)));
  }

  /** Encodes token ids into text features [N, embedDim] (not normalised). */
  encodeText(ids: TokenInput, options: EncodeTextOptions = {}): tf.Tensor2D {
    return tf.tidy(() => {
      const idsTensor = this.idsTensor(ids);
      let x = this.textEmbed(idsTensor);
      for (let i = 0; i < this.config.text.layers; i++) {
        x = this.textBlock(i, x);
        options.onBlock?.(i, x);
      }
      return this.textHead(x, idsTensor);
    });
  }

  /** Returns exp(logit_scale), a scalar. As in the reference, it is not clamped. */
  logitScale(): tf.Scalar {
    return tf.exp(this.param('logit_scale')) as tf.Scalar;
  }

  /** Computes the features of both towers and the scaled cosine-similarity logits between them. */
  forward(pixels: PixelInput, ids: TokenInput): ClipOutputs {
    const imageFeatures = this.encodeImage(pixels);
    const textFeatures = this.encodeText(ids);
    const logitsPerImage = tf.tidy(() => {
      const imageUnit = tf.div(imageFeatures, tf.norm(imageFeatures, 2, 1, true));
      const textUnit = tf.div(textFeatures, tf.norm(textFeatures, 2, 1, true));
      return tf.mul(this.logitScale(), tf.matMul(imageUnit, textUnit, false, true)) as tf.Tensor2D;
    });
    return { imageFeatures, textFeatures, logitsPerImage, logitsPerText: tf.transpose(logitsPerImage) };
  }

  /** Copies every parameter out in the canonical (PyTorch) layout. */
  getWeights(): Map<string, CheckpointTensor> {
    const weights = new Map<string, CheckpointTensor>();
    for (const [name, variable] of this.params) {
      const shape = this.canonicalShape(name);
      weights.set(name, { shape, data: toCanonical(name, shape, variable.dataSync() as Float32Array) });
    }
    return weights;
  }

  /** Assigns parameters from canonical-layout tensors; names not given keep their values. */
  setWeights(weights: Map<string, CheckpointTensor>): void {
    for (const [name, tensor] of weights) {
      const variable = this.params.get(name);
      if (!variable) throw new Error(`Cannot set weights: '${name}' is not a parameter of this CLIP model.`);
      const shape = this.shapes.get(name)!;
      checkShape(name, tensor, shape);
      tf.tidy(() => variable.assign(tf.tensor(toStored(name, shape, tensor.data), variable.shape, 'float32')));
    }
  }

  /** Releases every variable; the model cannot be used afterwards. */
  dispose(): void {
    for (const variable of this.params.values()) variable.dispose();
    this.params.clear();
    this.textMask.dispose();
  }

  private param = (name: string): tf.Tensor => {
    const variable = this.params.get(name);
    if (!variable) throw new Error(`Unknown CLIP parameter '${name}'${this.params.size === 0 ? ' (the model was disposed)' : ''}.`);
    return variable;
  };

  private pixelTensor(pixels: PixelInput): tf.Tensor4D {
    if (pixels instanceof tf.Tensor) return pixels;
    const size = this.config.vision.imageSize;
    const perImage = 3 * size * size;
    if (pixels.length === 0 || pixels.length % perImage !== 0) {
      throw new Error(`Invalid pixel array of length ${pixels.length}: expected a multiple of 3 x ${size} x ${size} = ${perImage} (NCHW).`);
    }
    return tf.tensor4d(pixels, [pixels.length / perImage, 3, size, size]);
  }

  private idsTensor(ids: TokenInput): tf.Tensor2D {
    if (ids instanceof tf.Tensor) return ids.dtype === 'int32' ? ids : tf.cast(ids, 'int32');
    const T = this.config.text.contextLength;
    if (Array.isArray(ids)) {
      const bad = ids.findIndex((row) => row.length !== T);
      if (bad >= 0) throw new Error(`Invalid token ids: row ${bad} has ${ids[bad].length} ids, expected ${T}.`);
      return tf.tensor2d(ids, [ids.length, T], 'int32');
    }
    if (ids.length === 0 || ids.length % T !== 0) throw new Error(`Invalid token id array of length ${ids.length}: expected a multiple of ${T}.`);
    return tf.tensor2d(ids, [ids.length / T, T], 'int32');
  }
}

function checkShape(name: string, tensor: CheckpointTensor, shape: number[]): void {
  const size = shape.reduce((a, b) => a * b, 1);
  const sameShape = tensor.shape.length === shape.length && tensor.shape.every((d, i) => d === shape[i]);
  if (!sameShape || tensor.data.length !== size) {
    throw new Error(`Weight '${name}' has shape ${formatShape(tensor.shape)} (${tensor.data.length} values), expected ${formatShape(shape)}.`);
  }
}

/** Returns `size` normal samples with mean 0; Box-Muller, using both outputs of each pair. */
function normalSamples(size: number, std: number, rng: Rng): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i += 2) {
    const radius = std * Math.sqrt(-2 * Math.log(1 - rng()));
    const angle = 2 * Math.PI * rng();
    out[i] = radius * Math.cos(angle);
    if (i + 1 < size) out[i + 1] = radius * Math.sin(angle);
  }
  return out;
}

/** Standard deviation of openai/CLIP's initialize_parameters for each parameter. */
function initStd(config: ClipConfig, name: string): number | 'one' | 'zero' | 'logit' {
  if (name === 'logit_scale') return 'logit';
  if (/\bln_\w+\.weight$/.test(name)) return 'one';
  if (name.endsWith('bias')) return 'zero';

  const vision = name.startsWith('visual.');
  const width = vision ? config.vision.width : config.text.width;
  const layers = vision ? config.vision.layers : config.text.layers;
  const attnStd = width ** -0.5;
  if (name === 'token_embedding.weight') return 0.02;
  if (name === 'positional_embedding') return 0.01;
  if (name === 'visual.conv1.weight') return (3 * config.vision.patchSize ** 2) ** -0.5;
  if (name === 'visual.class_embedding' || name === 'visual.positional_embedding' || name === 'visual.proj' || name === 'text_projection') return attnStd;
  if (name.endsWith('attn.in_proj_weight')) return attnStd;
  if (name.endsWith('attn.out_proj.weight') || name.endsWith('mlp.c_proj.weight')) return attnStd * (2 * layers) ** -0.5;
  if (name.endsWith('mlp.c_fc.weight')) return (2 * width) ** -0.5;
  throw new Error(`No initialisation rule for CLIP parameter '${name}'.`);
}
