// Stored layout of CLIP parameters inside ClipModel, and conversion from and to the
// canonical PyTorch layout of checkpoints.
//
// Linear weights are stored transposed, as [in, out], so the forward pass is a plain 2-D
// matMul (the fast path on wasm). The patch embedding conv1.weight [width, 3, p, p] is
// stored as the matrix [3*p*p, width]. Every other parameter keeps its canonical shape.
// Stored and canonical tensors have the same size, so gradients of stored variables
// serve any optimiser unchanged.
import type * as tf from '@tensorflow/tfjs';
import { transpose2d } from './checkpointLayouts.ts';
import type { BlockParams } from './layers.ts';

export type ParamLookup = (name: string) => tf.Tensor;

const TRANSPOSED_SUFFIXES = ['attn.in_proj_weight', 'attn.out_proj.weight', 'mlp.c_fc.weight', 'mlp.c_proj.weight'];

/** Returns true when `name` is stored as the transpose of its canonical matrix. */
export function isStoredTransposed(name: string): boolean {
  return name === 'visual.conv1.weight' || TRANSPOSED_SUFFIXES.some((suffix) => name.endsWith(suffix));
}

/** Returns the stored shape for a canonical name and shape. */
export function storedShape(name: string, canonicalShape: number[]): number[] {
  if (!isStoredTransposed(name)) return canonicalShape;
  const [rows, ...rest] = canonicalShape;
  return [rest.reduce((a, b) => a * b, 1), rows];
}

/** Converts canonical row-major data to the stored layout. */
export function toStored(name: string, canonicalShape: number[], data: Float32Array): Float32Array {
  if (!isStoredTransposed(name)) return data;
  const rows = canonicalShape[0];
  return transpose2d(data, rows, data.length / rows);
}

/** Converts stored row-major data back to the canonical layout. */
export function toCanonical(name: string, canonicalShape: number[], data: Float32Array): Float32Array {
  if (!isStoredTransposed(name)) return data;
  const rows = canonicalShape[0];
  return transpose2d(data, data.length / rows, rows);
}

/** Collects the parameters of one residual block from its canonical name prefix. */
export function blockParams(param: ParamLookup, prefix: string): BlockParams {
  return {
    ln1Gamma: param(`${prefix}ln_1.weight`),
    ln1Beta: param(`${prefix}ln_1.bias`),
    inProjWeight: param(`${prefix}attn.in_proj_weight`),
    inProjBias: param(`${prefix}attn.in_proj_bias`),
    outProjWeight: param(`${prefix}attn.out_proj.weight`),
    outProjBias: param(`${prefix}attn.out_proj.bias`),
    ln2Gamma: param(`${prefix}ln_2.weight`),
    ln2Beta: param(`${prefix}ln_2.bias`),
    fcWeight: param(`${prefix}mlp.c_fc.weight`),
    fcBias: param(`${prefix}mlp.c_fc.bias`),
    projWeight: param(`${prefix}mlp.c_proj.weight`),
    projBias: param(`${prefix}mlp.c_proj.bias`),
  };
}
