// CLIP architecture configuration: presets, and parsers for Hugging Face config.json,
// OpenAI/open_clip configs and tensor shapes.

export interface VisionConfig {
  imageSize: number;
  patchSize: number;
  width: number;
  layers: number;
  heads: number;
  mlpDim: number;
}

export interface TextConfig {
  contextLength: number;
  vocabSize: number;
  width: number;
  layers: number;
  heads: number;
  mlpDim: number;
}

export interface ClipConfig {
  /** Dimension of the joint image-text embedding space. */
  embedDim: number;
  vision: VisionConfig;
  text: TextConfig;
  layerNormEps: number;
  activation: 'quick_gelu' | 'gelu';
  /** Per-channel RGB mean and std for pixel normalisation, on the [0, 1] scale. */
  imageMean: [number, number, number];
  imageStd: [number, number, number];
}

/** Pixel statistics used to train the OpenAI CLIP models. */
export const CLIP_IMAGE_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
export const CLIP_IMAGE_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

/** Head width of every OpenAI CLIP transformer: heads = width / 64. */
const OPENAI_HEAD_WIDTH = 64;

function openAiPreset(embedDim: number, patchSize: number, visionWidth: number, visionLayers: number, textWidth: number): ClipConfig {
  return {
    embedDim,
    vision: {
      imageSize: 224,
      patchSize,
      width: visionWidth,
      layers: visionLayers,
      heads: visionWidth / OPENAI_HEAD_WIDTH,
      mlpDim: 4 * visionWidth,
    },
    text: { contextLength: 77, vocabSize: 49408, width: textWidth, layers: 12, heads: textWidth / OPENAI_HEAD_WIDTH, mlpDim: 4 * textWidth },
    layerNormEps: 1e-5,
    activation: 'quick_gelu',
    imageMean: [...CLIP_IMAGE_MEAN],
    imageStd: [...CLIP_IMAGE_STD],
  };
}

/** Architectures of the released OpenAI CLIP ViT checkpoints. */
export const PRESETS: Record<'ViT-B/32' | 'ViT-B/16' | 'ViT-L/14', ClipConfig> = {
  'ViT-B/32': openAiPreset(512, 32, 768, 12, 512),
  'ViT-B/16': openAiPreset(512, 16, 768, 12, 512),
  'ViT-L/14': openAiPreset(768, 14, 1024, 24, 768),
};

export type PresetName = keyof typeof PRESETS;

/** Returns a copy of a preset, so callers may modify it. */
export function presetConfig(name: string): ClipConfig {
  const preset = (PRESETS as Record<string, ClipConfig>)[name];
  if (!preset) throw new Error(`Unknown CLIP preset '${name}'. Available presets: ${Object.keys(PRESETS).join(', ')}.`);
  return structuredClone(preset);
}

/** Number of image patches (tokens without the class token). */
export function numPatches(config: ClipConfig): number {
  return (config.vision.imageSize / config.vision.patchSize) ** 2;
}

type Json = Record<string, unknown>;

/**
 * Parses a config object of any supported kind: a Hugging Face CLIPModel config.json
 * (`vision_config`/`text_config`), an open_clip model config (`vision_cfg`/`text_cfg`) or
 * the OpenAI constructor arguments (`vision_width`, `transformer_width`, ...).
 * `source` names the file in error messages.
 */
export function parseConfig(json: unknown, source = 'config'): ClipConfig {
  if (!json || typeof json !== 'object') throw new Error(`Invalid CLIP config in ${source}: expected a JSON object.`);
  const obj = json as Json;
  let config: ClipConfig;
  if ('vision_config' in obj || 'text_config' in obj) config = parseHfConfig(obj, source);
  else if ('vision_cfg' in obj || 'text_cfg' in obj) config = parseOpenClipConfig(obj, source);
  else if ('vision_width' in obj || 'transformer_width' in obj) config = parseOpenAiConfig(obj, source);
  else {
    throw new Error(
      `Unrecognised CLIP config in ${source}: expected Hugging Face keys (vision_config, text_config), ` +
        `open_clip keys (vision_cfg, text_cfg) or OpenAI keys (vision_width, transformer_width). Found keys: ${Object.keys(obj).join(', ')}.`,
    );
  }
  validateConfig(config, source);
  return config;
}

/** Parses a Hugging Face CLIPModel config.json. */
export function parseHfConfig(obj: Json, source = 'config.json'): ClipConfig {
  // Configs written by transformers before 4.20 may keep the values in *_config_dict.
  const vision = { ...section(obj, 'vision_config_dict', source), ...section(obj, 'vision_config', source) };
  const text = { ...section(obj, 'text_config_dict', source), ...section(obj, 'text_config', source) };
  const hiddenAct = (vision.hidden_act ?? text.hidden_act ?? 'quick_gelu') as string;
  const embedDim = num(obj, 'projection_dim', source, num(vision, 'projection_dim', source, 512));

  // Hugging Face omits keys that equal the CLIPVisionConfig / CLIPTextConfig defaults,
  // so the defaults below are those of transformers' configuration_clip.py.
  return {
    embedDim,
    vision: {
      imageSize: num(vision, 'image_size', source, 224),
      patchSize: num(vision, 'patch_size', source, 32),
      width: num(vision, 'hidden_size', source, 768),
      layers: num(vision, 'num_hidden_layers', source, 12),
      heads: num(vision, 'num_attention_heads', source, 12),
      mlpDim: num(vision, 'intermediate_size', source, 3072),
    },
    text: {
      contextLength: num(text, 'max_position_embeddings', source, 77),
      vocabSize: num(text, 'vocab_size', source, 49408),
      width: num(text, 'hidden_size', source, 512),
      layers: num(text, 'num_hidden_layers', source, 12),
      heads: num(text, 'num_attention_heads', source, 8),
      mlpDim: num(text, 'intermediate_size', source, 2048),
    },
    layerNormEps: num(vision, 'layer_norm_eps', source, 1e-5),
    activation: parseActivation(hiddenAct, source),
    imageMean: [...CLIP_IMAGE_MEAN],
    imageStd: [...CLIP_IMAGE_STD],
  };
}

/** Parses the OpenAI CLIP constructor arguments, as `clip.model.build_model` derives them. */
export function parseOpenAiConfig(obj: Json, source = 'config.json'): ClipConfig {
  const visionWidth = num(obj, 'vision_width', source);
  const textWidth = num(obj, 'transformer_width', source);
  const visionLayers = obj.vision_layers;
  if (Array.isArray(visionLayers)) {
    throw new Error(`Unsupported CLIP config in ${source}: vision_layers is a list, which means a ResNet image encoder. Only ViT image encoders are supported.`);
  }
  return {
    embedDim: num(obj, 'embed_dim', source),
    vision: {
      imageSize: num(obj, 'image_resolution', source),
      patchSize: num(obj, 'vision_patch_size', source),
      width: visionWidth,
      layers: num(obj, 'vision_layers', source),
      heads: num(obj, 'vision_heads', source, visionWidth / OPENAI_HEAD_WIDTH),
      mlpDim: 4 * visionWidth,
    },
    text: {
      contextLength: num(obj, 'context_length', source, 77),
      vocabSize: num(obj, 'vocab_size', source, 49408),
      width: textWidth,
      layers: num(obj, 'transformer_layers', source),
      heads: num(obj, 'transformer_heads', source, textWidth / OPENAI_HEAD_WIDTH),
      mlpDim: 4 * textWidth,
    },
    layerNormEps: 1e-5,
    activation: 'quick_gelu',
    imageMean: [...CLIP_IMAGE_MEAN],
    imageStd: [...CLIP_IMAGE_STD],
  };
}

/**
 * Parses an open_clip model config (`{embed_dim, vision_cfg, text_cfg, quick_gelu}`).
 * open_clip uses nn.GELU unless `quick_gelu` is true, so a config without it means GELU.
 */
export function parseOpenClipConfig(obj: Json, source = 'config.json'): ClipConfig {
  const vision = section(obj, 'vision_cfg', source);
  const text = section(obj, 'text_cfg', source);
  const visionWidth = num(vision, 'width', source, 768);
  const textWidth = num(text, 'width', source, 512);
  const preprocess = (obj.preprocess_cfg ?? {}) as Json;
  return {
    embedDim: num(obj, 'embed_dim', source),
    vision: {
      imageSize: num(vision, 'image_size', source, 224),
      patchSize: num(vision, 'patch_size', source, 16),
      width: visionWidth,
      layers: num(vision, 'layers', source, 12),
      heads: visionWidth / num(vision, 'head_width', source, OPENAI_HEAD_WIDTH),
      mlpDim: Math.round(visionWidth * num(vision, 'mlp_ratio', source, 4)),
    },
    text: {
      contextLength: num(text, 'context_length', source, 77),
      vocabSize: num(text, 'vocab_size', source, 49408),
      width: textWidth,
      layers: num(text, 'layers', source, 12),
      heads: num(text, 'heads', source, 8),
      mlpDim: Math.round(textWidth * num(text, 'mlp_ratio', source, 4)),
    },
    layerNormEps: 1e-5,
    activation: obj.quick_gelu === true ? 'quick_gelu' : 'gelu',
    imageMean: rgb(preprocess.mean, source, 'preprocess_cfg.mean') ?? [...CLIP_IMAGE_MEAN],
    imageStd: rgb(preprocess.std, source, 'preprocess_cfg.std') ?? [...CLIP_IMAGE_STD],
  };
}

/**
 * Infers the config from canonical (OpenAI-named) tensor shapes, as openai/CLIP's
 * `build_model` does. Shapes cannot encode the number of heads, so both towers get
 * width / 64 heads like every OpenAI model. A checkpoint trained with other head counts
 * needs its config.json. Activation and pixel statistics are OpenAI's.
 */
export function inferConfig(shapes: Map<string, number[]>): ClipConfig {
  const shapeOf = (name: string): number[] => {
    const shape = shapes.get(name);
    if (!shape) throw new Error(`Cannot infer the CLIP config: tensor '${name}' is missing. Add a config.json next to the checkpoint.`);
    return shape;
  };
  const countLayers = (prefix: string): number => {
    let layers = 0;
    while (shapes.has(`${prefix}${layers}.attn.in_proj_weight`)) layers++;
    return layers;
  };

  const [visionWidth, , patchSize] = shapeOf('visual.conv1.weight');
  const visionTokens = shapeOf('visual.positional_embedding')[0];
  const grid = Math.round(Math.sqrt(visionTokens - 1));
  if (grid * grid + 1 !== visionTokens) {
    throw new Error(`Cannot infer the image size: visual.positional_embedding has ${visionTokens} rows, which is not 1 + a square number of patches.`);
  }
  const [contextLength, textWidth] = shapeOf('positional_embedding');
  const visionLayers = countLayers('visual.transformer.resblocks.');
  const textLayers = countLayers('transformer.resblocks.');

  const config: ClipConfig = {
    embedDim: shapeOf('visual.proj')[1],
    vision: {
      imageSize: grid * patchSize,
      patchSize,
      width: visionWidth,
      layers: visionLayers,
      heads: Math.max(1, Math.round(visionWidth / OPENAI_HEAD_WIDTH)),
      mlpDim: visionLayers > 0 ? shapeOf('visual.transformer.resblocks.0.mlp.c_fc.weight')[0] : 4 * visionWidth,
    },
    text: {
      contextLength,
      vocabSize: shapeOf('token_embedding.weight')[0],
      width: textWidth,
      layers: textLayers,
      heads: Math.max(1, Math.round(textWidth / OPENAI_HEAD_WIDTH)),
      mlpDim: textLayers > 0 ? shapeOf('transformer.resblocks.0.mlp.c_fc.weight')[0] : 4 * textWidth,
    },
    layerNormEps: 1e-5,
    activation: 'quick_gelu',
    imageMean: [...CLIP_IMAGE_MEAN],
    imageStd: [...CLIP_IMAGE_STD],
  };
  validateConfig(config, 'tensor shapes');
  return config;
}

/** Reads image_mean / image_std from a Hugging Face preprocessor_config.json object. */
export function applyHfPreprocessorConfig(config: ClipConfig, obj: Json, source = 'preprocessor_config.json'): ClipConfig {
  return {
    ...config,
    imageMean: rgb(obj.image_mean, source, 'image_mean') ?? config.imageMean,
    imageStd: rgb(obj.image_std, source, 'image_std') ?? config.imageStd,
  };
}

/** Throws when sizes are not positive integers or do not divide as the model requires. */
export function validateConfig(config: ClipConfig, source = 'config'): void {
  const fields: [string, number][] = [
    ['embedDim', config.embedDim],
    ...Object.entries(config.vision).map(([k, v]) => [`vision.${k}`, v] as [string, number]),
    ...Object.entries(config.text).map(([k, v]) => [`text.${k}`, v] as [string, number]),
  ];
  for (const [name, value] of fields) {
    if (!Number.isInteger(value) || value <= 0) throw new Error(`Invalid CLIP config in ${source}: ${name} = ${value}, expected a positive integer.`);
  }
  const { vision, text } = config;
  if (vision.imageSize % vision.patchSize !== 0) {
    throw new Error(`Invalid CLIP config in ${source}: image size ${vision.imageSize} is not a multiple of patch size ${vision.patchSize}.`);
  }
  if (vision.width % vision.heads !== 0) throw new Error(`Invalid CLIP config in ${source}: vision width ${vision.width} is not divisible by ${vision.heads} heads.`);
  if (text.width % text.heads !== 0) throw new Error(`Invalid CLIP config in ${source}: text width ${text.width} is not divisible by ${text.heads} heads.`);
  if (!(config.layerNormEps > 0)) throw new Error(`Invalid CLIP config in ${source}: layerNormEps = ${config.layerNormEps}, expected a positive number.`);
}

function section(obj: Json, key: string, source: string): Json {
  const value = obj[key] ?? {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new Error(`Invalid CLIP config in ${source}: ${key} must be an object.`);
  return value as Json;
}

function num(obj: Json, key: string, source: string, fallback?: number): number {
  const value = obj[key];
  if (value === undefined || value === null) {
    if (fallback === undefined) throw new Error(`Invalid CLIP config in ${source}: required key '${key}' is missing.`);
    return fallback;
  }
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new Error(`Invalid CLIP config in ${source}: '${key}' = ${JSON.stringify(value)}, expected a number.`);
  return value;
}

function rgb(value: unknown, source: string, key: string): [number, number, number] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || value.length !== 3 || !value.every((v) => typeof v === 'number' && Number.isFinite(v))) {
    throw new Error(`Invalid ${key} in ${source}: ${JSON.stringify(value)}, expected three numbers (R, G, B).`);
  }
  return [value[0], value[1], value[2]];
}

function parseActivation(name: string, source: string): 'quick_gelu' | 'gelu' {
  if (name === 'quick_gelu') return 'quick_gelu';
  if (name === 'gelu') return 'gelu';
  throw new Error(`Unsupported activation '${name}' in ${source}. Supported: quick_gelu, gelu.`);
}
