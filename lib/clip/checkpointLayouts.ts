// Parameter names and shapes of the two checkpoint layouts clipfreeze reads.
//
// Canonical names are the OpenAI/open_clip state-dict names (`visual.transformer.resblocks.0.
// attn.in_proj_weight`, ...), with the shapes PyTorch stores. A Hugging Face CLIPModel stores
// the same values under other names: separate q/k/v projections that concatenate along rows
// into `in_proj_weight`, and `visual_projection.weight` / `text_projection.weight` as the
// transposes of `visual.proj` / `text_projection`.
import type { ClipConfig } from './config.ts';
import { numPatches } from './config.ts';

export type CheckpointFormat = 'openai' | 'hf';

/** Operation that builds one canonical tensor from its source tensors. */
export type Transform = 'copy' | 'transpose' | 'concatRows';

export interface LayoutRule {
  canonical: string;
  sources: string[];
  transform: Transform;
}

/**
 * Tensors that checkpoints may contain but the model does not use: Hugging Face position_ids
 * buffers (int64) and the integer attributes of an OpenAI TorchScript state dict.
 */
export const IGNORED_TENSORS = new Set([
  'vision_model.embeddings.position_ids',
  'text_model.embeddings.position_ids',
  'input_resolution',
  'context_length',
  'vocab_size',
]);

/** Parameter names inside one residual block, after `<tower prefix>.resblocks.<i>.`. */
export const BLOCK_PARAM_SUFFIXES = [
  'attn.in_proj_weight',
  'attn.in_proj_bias',
  'attn.out_proj.weight',
  'attn.out_proj.bias',
  'ln_1.weight',
  'ln_1.bias',
  'mlp.c_fc.weight',
  'mlp.c_fc.bias',
  'mlp.c_proj.weight',
  'mlp.c_proj.bias',
  'ln_2.weight',
  'ln_2.bias',
] as const;

/** Returns the canonical parameter names in model order: vision, text, logit scale. */
export function canonicalNames(visionLayers: number, textLayers: number): string[] {
  const names = ['visual.conv1.weight', 'visual.class_embedding', 'visual.positional_embedding', 'visual.ln_pre.weight', 'visual.ln_pre.bias'];
  for (let i = 0; i < visionLayers; i++) names.push(...BLOCK_PARAM_SUFFIXES.map((s) => `visual.transformer.resblocks.${i}.${s}`));
  names.push('visual.ln_post.weight', 'visual.ln_post.bias', 'visual.proj');
  names.push('token_embedding.weight', 'positional_embedding');
  for (let i = 0; i < textLayers; i++) names.push(...BLOCK_PARAM_SUFFIXES.map((s) => `transformer.resblocks.${i}.${s}`));
  names.push('ln_final.weight', 'ln_final.bias', 'text_projection', 'logit_scale');
  return names;
}

/** Returns the PyTorch shape of every canonical parameter for `config`, in model order. */
export function canonicalShapes(config: ClipConfig): Map<string, number[]> {
  const { vision, text, embedDim } = config;
  const shapes = new Map<string, number[]>();
  const W = vision.width;
  shapes.set('visual.conv1.weight', [W, 3, vision.patchSize, vision.patchSize]);
  shapes.set('visual.class_embedding', [W]);
  shapes.set('visual.positional_embedding', [numPatches(config) + 1, W]);
  shapes.set('visual.ln_pre.weight', [W]);
  shapes.set('visual.ln_pre.bias', [W]);
  for (let i = 0; i < vision.layers; i++) addBlockShapes(shapes, `visual.transformer.resblocks.${i}.`, W, vision.mlpDim);
  shapes.set('visual.ln_post.weight', [W]);
  shapes.set('visual.ln_post.bias', [W]);
  shapes.set('visual.proj', [W, embedDim]);

  const T = text.width;
  shapes.set('token_embedding.weight', [text.vocabSize, T]);
  shapes.set('positional_embedding', [text.contextLength, T]);
  for (let i = 0; i < text.layers; i++) addBlockShapes(shapes, `transformer.resblocks.${i}.`, T, text.mlpDim);
  shapes.set('ln_final.weight', [T]);
  shapes.set('ln_final.bias', [T]);
  shapes.set('text_projection', [T, embedDim]);
  shapes.set('logit_scale', []);
  return shapes;
}

function addBlockShapes(shapes: Map<string, number[]>, prefix: string, width: number, mlpDim: number): void {
  shapes.set(`${prefix}attn.in_proj_weight`, [3 * width, width]);
  shapes.set(`${prefix}attn.in_proj_bias`, [3 * width]);
  shapes.set(`${prefix}attn.out_proj.weight`, [width, width]);
  shapes.set(`${prefix}attn.out_proj.bias`, [width]);
  shapes.set(`${prefix}ln_1.weight`, [width]);
  shapes.set(`${prefix}ln_1.bias`, [width]);
  shapes.set(`${prefix}mlp.c_fc.weight`, [mlpDim, width]);
  shapes.set(`${prefix}mlp.c_fc.bias`, [mlpDim]);
  shapes.set(`${prefix}mlp.c_proj.weight`, [width, mlpDim]);
  shapes.set(`${prefix}mlp.c_proj.bias`, [width]);
  shapes.set(`${prefix}ln_2.weight`, [width]);
  shapes.set(`${prefix}ln_2.bias`, [width]);
}

/** Detects the layout from tensor names, or returns null when neither matches. */
export function detectFormat(names: Iterable<string>): CheckpointFormat | null {
  let openai = false;
  for (const name of names) {
    if (name.startsWith('vision_model.') || name.startsWith('text_model.')) return 'hf';
    if (name.startsWith('visual.') || name.startsWith('transformer.resblocks.') || name === 'token_embedding.weight') openai = true;
  }
  return openai ? 'openai' : null;
}

/** Counts vision and text blocks from the highest block index present in the names. */
export function countLayers(names: Iterable<string>, format: CheckpointFormat): { vision: number; text: number } {
  const patterns =
    format === 'hf'
      ? { vision: /^vision_model\.encoder\.layers\.(\d+)\./, text: /^text_model\.encoder\.layers\.(\d+)\./ }
      : { vision: /^visual\.transformer\.resblocks\.(\d+)\./, text: /^transformer\.resblocks\.(\d+)\./ };
  const counts = { vision: 0, text: 0 };
  for (const name of names) {
    for (const tower of ['vision', 'text'] as const) {
      const match = patterns[tower].exec(name);
      if (match) counts[tower] = Math.max(counts[tower], Number(match[1]) + 1);
    }
  }
  return counts;
}

/** Returns one rule per canonical parameter, in model order. */
export function layoutRules(format: CheckpointFormat, visionLayers: number, textLayers: number): LayoutRule[] {
  const names = canonicalNames(visionLayers, textLayers);
  if (format === 'openai') return names.map((name) => ({ canonical: name, sources: [name], transform: 'copy' }));
  return names.map(hfRule);
}

const HF_FIXED: Record<string, [string, Transform]> = {
  'visual.conv1.weight': ['vision_model.embeddings.patch_embedding.weight', 'copy'],
  'visual.class_embedding': ['vision_model.embeddings.class_embedding', 'copy'],
  'visual.positional_embedding': ['vision_model.embeddings.position_embedding.weight', 'copy'],
  // "pre_layrnorm" is the spelling in transformers' modeling_clip.py.
  'visual.ln_pre.weight': ['vision_model.pre_layrnorm.weight', 'copy'],
  'visual.ln_pre.bias': ['vision_model.pre_layrnorm.bias', 'copy'],
  'visual.ln_post.weight': ['vision_model.post_layernorm.weight', 'copy'],
  'visual.ln_post.bias': ['vision_model.post_layernorm.bias', 'copy'],
  'visual.proj': ['visual_projection.weight', 'transpose'],
  'token_embedding.weight': ['text_model.embeddings.token_embedding.weight', 'copy'],
  'positional_embedding': ['text_model.embeddings.position_embedding.weight', 'copy'],
  'ln_final.weight': ['text_model.final_layer_norm.weight', 'copy'],
  'ln_final.bias': ['text_model.final_layer_norm.bias', 'copy'],
  'text_projection': ['text_projection.weight', 'transpose'],
  'logit_scale': ['logit_scale', 'copy'],
};

const HF_BLOCK: Record<string, string> = {
  'attn.out_proj.weight': 'self_attn.out_proj.weight',
  'attn.out_proj.bias': 'self_attn.out_proj.bias',
  'ln_1.weight': 'layer_norm1.weight',
  'ln_1.bias': 'layer_norm1.bias',
  'mlp.c_fc.weight': 'mlp.fc1.weight',
  'mlp.c_fc.bias': 'mlp.fc1.bias',
  'mlp.c_proj.weight': 'mlp.fc2.weight',
  'mlp.c_proj.bias': 'mlp.fc2.bias',
  'ln_2.weight': 'layer_norm2.weight',
  'ln_2.bias': 'layer_norm2.bias',
};

function hfRule(canonical: string): LayoutRule {
  const fixed = HF_FIXED[canonical];
  if (fixed) return { canonical, sources: [fixed[0]], transform: fixed[1] };

  const match = /^(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$/.exec(canonical);
  if (!match) throw new Error(`No Hugging Face name for canonical parameter '${canonical}'.`);
  const prefix = `${match[1] ? 'vision_model' : 'text_model'}.encoder.layers.${match[2]}.`;
  const suffix = match[3];
  if (suffix === 'attn.in_proj_weight' || suffix === 'attn.in_proj_bias') {
    const kind = suffix.endsWith('weight') ? 'weight' : 'bias';
    return { canonical, sources: ['q', 'k', 'v'].map((p) => `${prefix}self_attn.${p}_proj.${kind}`), transform: 'concatRows' };
  }
  return { canonical, sources: [`${prefix}${HF_BLOCK[suffix]}`], transform: 'copy' };
}

/** Returns the shape each source tensor of `rule` must have for a canonical shape. */
export function sourceShape(rule: LayoutRule, canonicalShape: number[]): number[] {
  switch (rule.transform) {
    case 'copy':
      return canonicalShape;
    case 'transpose':
      return [...canonicalShape].reverse();
    case 'concatRows':
      return [canonicalShape[0] / rule.sources.length, ...canonicalShape.slice(1)];
  }
}

/** Returns the canonical shape built from source shapes (the inverse of sourceShape). */
export function canonicalShapeFrom(rule: LayoutRule, shapes: number[][]): number[] {
  switch (rule.transform) {
    case 'copy':
      return shapes[0];
    case 'transpose':
      return [...shapes[0]].reverse();
    case 'concatRows':
      return [shapes.reduce((rows, s) => rows + s[0], 0), ...shapes[0].slice(1)];
  }
}

/** Builds the canonical tensor data from the source tensors of `rule`. */
export function combineSources(rule: LayoutRule, data: Float32Array[], shapes: number[][]): Float32Array {
  switch (rule.transform) {
    case 'copy':
      return data[0];
    case 'transpose':
      return transpose2d(data[0], shapes[0][0], shapes[0][1]);
    case 'concatRows': {
      const out = new Float32Array(data.reduce((n, d) => n + d.length, 0));
      let offset = 0;
      for (const d of data) {
        out.set(d, offset);
        offset += d.length;
      }
      return out;
    }
  }
}

/** Transposes a row-major [rows, cols] matrix. */
export function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) {
    const rowOffset = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = data[rowOffset + c];
  }
  return out;
}
