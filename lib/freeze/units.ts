// Layer units: the one definition of the parts of CLIP that can be frozen, trained or cut off.
// Freezing, per-unit learning rates, cost accounting, the selection strategies and the report
// all read this list, in the way open_clip's layer groups and timm's group matchers do.
//
//   vision.embed        patch embedding (conv1), class token, positional embedding, ln_pre
//   vision.block.i      residual attention block i of the image tower, i = 0..layers-1
//   vision.head         ln_post and the projection to the joint embedding
//   text.embed          token embedding and positional embedding
//   text.block.i        residual attention block i of the text tower (causal)
//   text.head           ln_final and the text projection
//   logit_scale         the learned temperature
//   head                the task head: a linear classifier on normalised image features
//
// Parameter names are the canonical OpenAI/open_clip state-dict names; the task head's are
// `head.weight` [embedDim, findings] and `head.bias` [findings].
import { BLOCK_PARAM_SUFFIXES } from '../clip/checkpointLayouts.ts';

/**
 * The geometry a unit list needs. `ClipConfig` from lib/clip/config.ts satisfies it, so callers
 * pass a model's config directly.
 */
export interface ClipGeometry {
  embedDim: number;
  vision: { imageSize: number; patchSize: number; width: number; layers: number; mlpDim: number };
  text: { contextLength: number; vocabSize: number; width: number; layers: number; mlpDim: number };
}

export type Tower = 'vision' | 'text' | 'logit_scale' | 'head';

export interface LayerUnit {
  /** Unit name, e.g. `vision.block.3`. */
  name: string;
  tower: Tower;
  /**
   * Position along the tower's forward pass: embed is 0, block i is i+1, the tower's head is
   * layers+1. The task head follows the vision head (vision.layers+2); logit_scale is 0.
   */
  depth: number;
  /** Block index for `*.block.i` units, otherwise null. */
  block: number | null;
  /** Canonical parameter names with their canonical (PyTorch) shapes. */
  params: Array<{ name: string; shape: number[] }>;
}

export const HEAD_UNIT = 'head';
export const HEAD_PARAMS = { weight: 'head.weight', bias: 'head.bias' } as const;

/** The default number of findings of the task head (ChestX-ray14). */
export const DEFAULT_FINDINGS = 14;

function blockParams(prefix: string, width: number, mlpDim: number): Array<{ name: string; shape: number[] }> {
  const shapes: Record<(typeof BLOCK_PARAM_SUFFIXES)[number], number[]> = {
    'attn.in_proj_weight': [3 * width, width],
    'attn.in_proj_bias': [3 * width],
    'attn.out_proj.weight': [width, width],
    'attn.out_proj.bias': [width],
    'ln_1.weight': [width],
    'ln_1.bias': [width],
    'mlp.c_fc.weight': [mlpDim, width],
    'mlp.c_fc.bias': [mlpDim],
    'mlp.c_proj.weight': [width, mlpDim],
    'mlp.c_proj.bias': [width],
    'ln_2.weight': [width],
    'ln_2.bias': [width],
  };
  return BLOCK_PARAM_SUFFIXES.map((suffix) => ({ name: `${prefix}.${suffix}`, shape: shapes[suffix] }));
}

/** Lists every layer unit of a CLIP model with the task head, in forward order per tower. */
export function layerUnits(config: ClipGeometry, findings = DEFAULT_FINDINGS): LayerUnit[] {
  const v = config.vision;
  const t = config.text;
  const tokens = (v.imageSize / v.patchSize) ** 2 + 1;
  const units: LayerUnit[] = [];

  units.push({
    name: 'vision.embed',
    tower: 'vision',
    depth: 0,
    block: null,
    params: [
      { name: 'visual.conv1.weight', shape: [v.width, 3, v.patchSize, v.patchSize] },
      { name: 'visual.class_embedding', shape: [v.width] },
      { name: 'visual.positional_embedding', shape: [tokens, v.width] },
      { name: 'visual.ln_pre.weight', shape: [v.width] },
      { name: 'visual.ln_pre.bias', shape: [v.width] },
    ],
  });
  for (let i = 0; i < v.layers; i++) {
    units.push({
      name: `vision.block.${i}`,
      tower: 'vision',
      depth: i + 1,
      block: i,
      params: blockParams(`visual.transformer.resblocks.${i}`, v.width, v.mlpDim),
    });
  }
  units.push({
    name: 'vision.head',
    tower: 'vision',
    depth: v.layers + 1,
    block: null,
    params: [
      { name: 'visual.ln_post.weight', shape: [v.width] },
      { name: 'visual.ln_post.bias', shape: [v.width] },
      { name: 'visual.proj', shape: [v.width, config.embedDim] },
    ],
  });

  units.push({
    name: 'text.embed',
    tower: 'text',
    depth: 0,
    block: null,
    params: [
      { name: 'token_embedding.weight', shape: [t.vocabSize, t.width] },
      { name: 'positional_embedding', shape: [t.contextLength, t.width] },
    ],
  });
  for (let i = 0; i < t.layers; i++) {
    units.push({
      name: `text.block.${i}`,
      tower: 'text',
      depth: i + 1,
      block: i,
      params: blockParams(`transformer.resblocks.${i}`, t.width, t.mlpDim),
    });
  }
  units.push({
    name: 'text.head',
    tower: 'text',
    depth: t.layers + 1,
    block: null,
    params: [
      { name: 'ln_final.weight', shape: [t.width] },
      { name: 'ln_final.bias', shape: [t.width] },
      { name: 'text_projection', shape: [t.width, config.embedDim] },
    ],
  });

  units.push({ name: 'logit_scale', tower: 'logit_scale', depth: 0, block: null, params: [{ name: 'logit_scale', shape: [] }] });
  units.push({
    name: HEAD_UNIT,
    tower: 'head',
    depth: v.layers + 2,
    block: null,
    params: [
      { name: HEAD_PARAMS.weight, shape: [config.embedDim, findings] },
      { name: HEAD_PARAMS.bias, shape: [findings] },
    ],
  });
  return units;
}

/** Returns the names of all units, in the order of `layerUnits`. */
export function unitNames(config: ClipGeometry): string[] {
  return layerUnits(config).map((u) => u.name);
}

/** Returns the unit that owns a canonical parameter name, or throws naming the parameter. */
export function unitOfParam(config: ClipGeometry, param: string): LayerUnit {
  for (const unit of layerUnits(config)) {
    if (unit.params.some((p) => p.name === param)) return unit;
  }
  throw new Error(`Parameter '${param}' belongs to no layer unit; expected a canonical OpenAI/open_clip state-dict name.`);
}

export function shapeSize(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Returns the parameter count of a unit. With `sizeOf` (e.g. sizes from a loaded checkpoint),
 * sizes come from there and a missing parameter is an error; otherwise from the config's shapes.
 */
export function unitParamCount(unit: LayerUnit, sizeOf?: (param: string) => number | undefined): number {
  let total = 0;
  for (const p of unit.params) {
    if (!sizeOf) {
      total += shapeSize(p.shape);
      continue;
    }
    const size = sizeOf(p.name);
    if (size === undefined) throw new Error(`Parameter '${p.name}' of unit '${unit.name}' is missing from the checkpoint.`);
    total += size;
  }
  return total;
}

/**
 * Returns true when AdamW applies weight decay to the parameter. As in timm and open_clip,
 * gains and biases (every 1-D or scalar tensor), the class token, positional and token
 * embeddings and the logit scale are not decayed; matrices and the patch-embedding filter are.
 */
export function decaysWeight(param: string, shape: readonly number[]): boolean {
  if (shape.length < 2) return false;
  if (/(^|\.)(class_embedding|positional_embedding|logit_scale)$/.test(param)) return false;
  if (param === 'token_embedding.weight') return false;
  return true;
}
