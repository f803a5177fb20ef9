// Loads a CLIP checkpoint from safetensors into canonical (OpenAI-named) float32 tensors.
//
// A checkpoint path is a .safetensors file or a directory holding one, or a sharded set
// with model.safetensors.index.json. The config comes from config.json (Hugging Face,
// OpenAI or open_clip) or open_clip_config.json next to the weights, else it is inferred
// from tensor shapes. Every tensor is validated before any is used.
import fs from 'node:fs';
import path from 'node:path';
import { applyHfPreprocessorConfig, inferConfig, parseConfig, type ClipConfig } from './config.ts';
import {
  canonicalShapeFrom,
  canonicalShapes,
  combineSources,
  countLayers,
  detectFormat,
  IGNORED_TENSORS,
  layoutRules,
  sourceShape,
  type CheckpointFormat,
  type LayoutRule,
} from './checkpointLayouts.ts';
import { formatShape, isSupportedDtype, readSafetensorsHeader, readTensor, SUPPORTED_DTYPES, type TensorInfo } from './safetensors.ts';
import { sha256File, sha256Json } from '../util/hash.ts';
import { moduleLog } from '../util/log.ts';

const logger = moduleLog('checkpoint');

export interface CheckpointTensor {
  /** Canonical (PyTorch) shape. */
  shape: number[];
  /** Row-major float32 values. */
  data: Float32Array;
}

export interface Checkpoint {
  config: ClipConfig;
  /** Canonical name to tensor, in model order (vision, text, logit scale). */
  weights: Map<string, CheckpointTensor>;
  format: CheckpointFormat;
  /** Absolute paths of the safetensors files read. */
  files: string[];
  /**
   * SHA-256 of the weights: the hex digest of the file for a single file (what `sha256sum`
   * prints), or of the sorted {file name: digest} map for a sharded checkpoint.
   */
  sha256: string;
  /** Directory that contains the weights and, when present, config.json. */
  dir: string;
}

export interface LoadCheckpointOptions {
  /** Overrides config.json and shape inference, e.g. to set head counts that shapes cannot encode. */
  config?: ClipConfig;
}

const PICKLE_EXTENSIONS = ['.bin', '.pt', '.pth', '.ckpt'];

/** Loads and validates a checkpoint. Throws an error that names every bad tensor. */
export function loadCheckpoint(checkpointPath: string, options: LoadCheckpointOptions = {}): Checkpoint {
  const { dir, files } = resolveFiles(checkpointPath);
  const headers = files.map(readSafetensorsHeader);

  // Merge tensor tables; a name in two shards is ambiguous.
  const tensors = new Map<string, TensorInfo>();
  for (const header of headers) {
    for (const [name, info] of header.tensors) {
      const previous = tensors.get(name);
      if (previous) throw new Error(`Tensor '${name}' appears in both ${previous.file} and ${info.file}. Remove the duplicate shard.`);
      tensors.set(name, info);
    }
  }
  const names = [...tensors.keys()].filter((name) => !IGNORED_TENSORS.has(name));
  const format = detectFormat(names);
  if (!format) {
    throw new Error(
      `Unrecognised checkpoint layout in ${files.join(', ')}: expected OpenAI/open_clip names (visual.*, transformer.resblocks.*) ` +
        `or Hugging Face CLIPModel names (vision_model.*, text_model.*). First tensor names: ${names.slice(0, 5).join(', ')}.`,
    );
  }

  const layers = countLayers(names, format);
  const rules = layoutRules(format, layers.vision, layers.text);
  const config = options.config ?? readConfig(dir) ?? inferConfigFromSources(rules, tensors, files);
  validateTensors(config, format, tensors, files);

  const weights = new Map<string, CheckpointTensor>();
  const expected = canonicalShapes(config);
  for (const rule of layoutRules(format, config.vision.layers, config.text.layers)) {
    const infos = rule.sources.map((name) => tensors.get(name)!);
    const data = combineSources(rule, infos.map(readTensor), infos.map((info) => info.shape));
    checkFinite(rule, data, files);
    weights.set(rule.canonical, { shape: expected.get(rule.canonical)!, data });
  }

  const sha256 = checkpointSha256(files);
  logger.info(`Loaded ${format} checkpoint ${checkpointPath}: ${weights.size} tensors, sha256 ${sha256.slice(0, 12)}`);
  return { config, weights, format, files, sha256, dir };
}

/** Finds the safetensors file(s) for a file or directory path. */
export function resolveFiles(checkpointPath: string): { dir: string; files: string[] } {
  if (!fs.existsSync(checkpointPath)) throw new Error(`Checkpoint not found: ${checkpointPath}. Pass a directory with model.safetensors or a .safetensors file.`);
  const absolute = path.resolve(checkpointPath);

  if (fs.statSync(absolute).isFile()) {
    if (absolute.endsWith('.safetensors')) return { dir: path.dirname(absolute), files: [absolute] };
    if (absolute.endsWith('.safetensors.index.json')) return { dir: path.dirname(absolute), files: shardsFromIndex(absolute) };
    if (PICKLE_EXTENSIONS.some((ext) => absolute.endsWith(ext))) throw pickleError(absolute);
    throw new Error(`Unsupported checkpoint file ${absolute}: expected a .safetensors file or a directory that contains one.`);
  }

  const entries = fs.readdirSync(absolute).sort();
  const index = entries.find((e) => e.endsWith('.safetensors.index.json'));
  if (index) return { dir: absolute, files: shardsFromIndex(path.join(absolute, index)) };
  if (entries.includes('model.safetensors')) return { dir: absolute, files: [path.join(absolute, 'model.safetensors')] };

  const safetensors = entries.filter((e) => e.endsWith('.safetensors'));
  if (safetensors.length === 1) return { dir: absolute, files: [path.join(absolute, safetensors[0])] };
  if (safetensors.length > 1) {
    throw new Error(
      `Checkpoint directory ${absolute} has several .safetensors files (${safetensors.join(', ')}) but no model.safetensors.index.json. ` +
        `Pass the file to load, or add the index file of the sharded checkpoint.`,
    );
  }
  const pickle = entries.find((e) => PICKLE_EXTENSIONS.some((ext) => e.endsWith(ext)));
  if (pickle) throw pickleError(path.join(absolute, pickle));
  throw new Error(`No .safetensors file in checkpoint directory ${absolute}. Download model.safetensors (for example from Hugging Face's openai/clip-vit-base-patch32) into it.`);
}

function shardsFromIndex(indexFile: string): string[] {
  let index: { weight_map?: Record<string, string> };
  try {
    index = JSON.parse(fs.readFileSync(indexFile, 'utf8'));
  } catch (err) {
    throw new Error(`Invalid shard index ${indexFile}: ${(err as Error).message}`);
  }
  if (!index.weight_map || typeof index.weight_map !== 'object') throw new Error(`Invalid shard index ${indexFile}: it has no weight_map object.`);

  const shards = [...new Set(Object.values(index.weight_map))].sort();
  const dir = path.dirname(indexFile);
  const files = shards.map((shard) => path.join(dir, shard));
  for (const file of files) {
    if (!fs.existsSync(file)) throw new Error(`Shard ${file} listed in ${indexFile} was not found. Download every shard of the checkpoint.`);
  }
  return files;
}

function pickleError(file: string): Error {
  return new Error(
    `${file} is a PyTorch pickle checkpoint; clipfreeze reads only safetensors, which cannot run code when loaded. ` +
      `Download model.safetensors instead (Hugging Face's openai/clip-vit-base-patch32 publishes one), or convert in Python: ` +
      `\`import torch; from safetensors.torch import save_file; sd = torch.load('${path.basename(file)}', map_location='cpu'); ` +
      `save_file({k: v.float().contiguous() for k, v in sd.items()}, 'model.safetensors')\`. ` +
      `For an OpenAI TorchScript archive (ViT-B-32.pt) use sd = torch.jit.load(path, map_location='cpu').state_dict().`,
  );
}

/** Reads config.json or open_clip_config.json from `dir`, or returns null when neither exists. */
function readConfig(dir: string): ClipConfig | null {
  const read = (file: string): Record<string, unknown> => {
    try {
      return JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (err) {
      throw new Error(`Invalid JSON in ${file}: ${(err as Error).message}. Fix or remove the file (the config is then inferred from tensor shapes).`);
    }
  };

  const configFile = path.join(dir, 'config.json');
  const openClipFile = path.join(dir, 'open_clip_config.json');
  let config: ClipConfig;
  if (fs.existsSync(configFile)) {
    config = parseConfig(read(configFile), configFile);
  } else if (fs.existsSync(openClipFile)) {
    const json = read(openClipFile);
    const modelConfig = (json.model_cfg ?? json) as Record<string, unknown>;
    config = parseConfig({ ...modelConfig, preprocess_cfg: json.preprocess_cfg ?? modelConfig.preprocess_cfg }, openClipFile);
  } else {
    return null;
  }

  const preprocessorFile = path.join(dir, 'preprocessor_config.json');
  if (fs.existsSync(preprocessorFile)) config = applyHfPreprocessorConfig(config, read(preprocessorFile), preprocessorFile);
  return config;
}

function inferConfigFromSources(rules: LayoutRule[], tensors: Map<string, TensorInfo>, files: string[]): ClipConfig {
  const shapes = new Map<string, number[]>();
  for (const rule of rules) {
    const infos = rule.sources.map((name) => tensors.get(name));
    if (infos.every((info) => info !== undefined)) shapes.set(rule.canonical, canonicalShapeFrom(rule, infos.map((info) => info!.shape)));
  }
  try {
    const config = inferConfig(shapes);
    logger.info(`No config.json next to ${files[0]}; config inferred from tensor shapes (heads = width / 64 as in OpenAI CLIP).`);
    return config;
  } catch (err) {
    throw new Error(`${(err as Error).message} (checkpoint ${files.join(', ')})`);
  }
}

/** Checks names, shapes and dtypes against `config`; throws one error that lists every problem. */
function validateTensors(config: ClipConfig, format: CheckpointFormat, tensors: Map<string, TensorInfo>, files: string[]): void {
  const problems: string[] = [];
  const expectedSources = new Set<string>();
  const shapes = canonicalShapes(config);

  for (const rule of layoutRules(format, config.vision.layers, config.text.layers)) {
    const expectedShape = sourceShape(rule, shapes.get(rule.canonical)!);
    for (const name of rule.sources) {
      expectedSources.add(name);
      const info = tensors.get(name);
      if (!info) {
        problems.push(`missing tensor '${name}' (expected shape ${formatShape(expectedShape)})`);
        continue;
      }
      if (!sameShape(info.shape, expectedShape)) {
        problems.push(`tensor '${name}' has shape ${formatShape(info.shape)}, expected ${formatShape(expectedShape)}`);
      }
      if (!isSupportedDtype(info.dtype)) {
        problems.push(`tensor '${name}' has unsupported dtype ${info.dtype} (supported: ${SUPPORTED_DTYPES.join(', ')})`);
      }
    }
  }
  for (const name of tensors.keys()) {
    if (!expectedSources.has(name) && !IGNORED_TENSORS.has(name)) {
      problems.push(`unexpected tensor '${name}' (shape ${formatShape(tensors.get(name)!.shape)}) is not part of a ${describeConfig(config)} CLIP`);
    }
  }

  if (problems.length === 0) return;
  const shown = problems.slice(0, 20);
  const more = problems.length > shown.length ? `\n  ... and ${problems.length - shown.length} more` : '';
  throw new Error(
    `Invalid ${format === 'hf' ? 'Hugging Face' : 'OpenAI'} CLIP checkpoint ${files.join(', ')}: ${problems.length} problem(s)\n  ` +
      shown.join('\n  ') +
      more +
      `\nCheck that config.json matches the weights (or remove it to infer the config from shapes), and that the file is a CLIP ViT checkpoint.`,
  );
}

function describeConfig(config: ClipConfig): string {
  const { vision, text } = config;
  return `vision ${vision.layers}x${vision.width} (patch ${vision.patchSize}), text ${text.layers}x${text.width}`;
}

function checkFinite(rule: LayoutRule, data: Float32Array, files: string[]): void {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      throw new Error(`Tensor '${rule.sources.join("', '")}' in ${files.join(', ')} contains ${data[i]} at element ${i}. The checkpoint is corrupt: download or convert it again.`);
    }
  }
}

function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

// SHA-256 digests by file identity, so a process hashes each file once.
const digestCache = new Map<string, string>();

function checkpointSha256(files: string[]): string {
  const digests: Record<string, string> = {};
  for (const file of files) {
    const stat = fs.statSync(file);
    const key = `${fs.realpathSync(file)}:${stat.size}:${stat.mtimeMs}`;
    let digest = digestCache.get(key);
    if (!digest) {
      digest = sha256File(file);
      digestCache.set(key, digest);
    }
    digests[path.basename(file)] = digest;
  }
  return files.length === 1 ? Object.values(digests)[0] : sha256Json(digests);
}
