// `clipfreeze embed`: runs a checkpoint on images and texts and prints the features and logits
// as JSON, in the form of the reference implementation's outputs, so a port can be checked
// against PyTorch CLIP by eye or by script.
import type { Command } from 'commander';
import * as tf from '@tensorflow/tfjs';
import { ClipModel } from '../clip/model.ts';
import { preprocessConfigFrom, preprocessImage } from '../clip/preprocess.ts';
import { ClipTokenizer } from '../clip/tokenizer.ts';
import { initBackend } from '../util/backend.ts';

export interface EmbedOptions {
  checkpoint: string;
  images: string[];
  texts: string[];
  backend?: string;
}

/** Output of `clipfreeze embed`. Features are before normalisation; logits are null unless both images and texts are given. */
export interface EmbedResult {
  backend: string;
  checkpoint: string;
  token_ids: number[][];
  image_features: number[][];
  text_features: number[][];
  logits_per_image: number[][] | null;
  logits_per_text: number[][] | null;
}

/** Loads the checkpoint, tokenizes the texts, preprocesses the images and runs both towers. */
export async function embed(options: EmbedOptions): Promise<EmbedResult> {
  if (options.images.length === 0 && options.texts.length === 0) {
    throw new Error('Nothing to embed: pass at least one --image FILE or --text STRING.');
  }
  const backend = await initBackend(options.backend);
  const { model, checkpoint } = await ClipModel.load(options.checkpoint);
  const tokenizer = ClipTokenizer.fromDir(checkpoint.dir);
  const contextLength = model.config.text.contextLength;
  const size = model.config.vision.imageSize;

  try {
    const ids = tokenizer.tokenize(options.texts, contextLength);
    const tokenIds = rows(ids, options.texts.length, contextLength);

    const cfg = preprocessConfigFrom(model.config);
    const pixels = new Float32Array(options.images.length * 3 * size * size);
    for (const [i, image] of options.images.entries()) pixels.set(await preprocessImage(image, cfg), i * 3 * size * size);

    const result: EmbedResult = {
      backend: backend.name,
      checkpoint: checkpoint.dir,
      token_ids: tokenIds,
      image_features: [],
      text_features: [],
      logits_per_image: null,
      logits_per_text: null,
    };

    if (options.images.length > 0 && options.texts.length > 0) {
      const out = model.forward(tf.tensor4d(pixels, [options.images.length, 3, size, size]), tf.tensor2d(ids, [options.texts.length, contextLength], 'int32'));
      result.image_features = out.imageFeatures.arraySync();
      result.text_features = out.textFeatures.arraySync();
      result.logits_per_image = out.logitsPerImage.arraySync();
      result.logits_per_text = out.logitsPerText.arraySync();
      tf.dispose([out.imageFeatures, out.textFeatures, out.logitsPerImage, out.logitsPerText]);
    } else if (options.images.length > 0) {
      const features = model.encodeImage(tf.tensor4d(pixels, [options.images.length, 3, size, size]));
      result.image_features = features.arraySync();
      features.dispose();
    } else {
      const features = model.encodeText(tf.tensor2d(ids, [options.texts.length, contextLength], 'int32'));
      result.text_features = features.arraySync();
      features.dispose();
    }
    return result;
  } finally {
    model.dispose();
  }
}

function rows(values: Int32Array, count: number, width: number): number[][] {
  return Array.from({ length: count }, (_, i) => Array.from(values.subarray(i * width, (i + 1) * width)));
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function register(program: Command): void {
  program
    .command('embed')
    .description('Print image and text features (before normalisation), token ids and logits of a checkpoint as JSON.')
    .requiredOption('--checkpoint <dir>', 'checkpoint folder or .safetensors file (OpenAI or Hugging Face layout)')
    .option('--image <file>', 'PNG or JPEG image to embed (repeatable)', collect, [])
    .option('--text <string>', 'text to embed (repeatable)', collect, [])
    .action(async (opts: { checkpoint: string; image: string[]; text: string[] }, cmd: Command) => {
      const backend = (cmd.optsWithGlobals() as { backend?: string }).backend;
      const result = await embed({ checkpoint: opts.checkpoint, images: opts.image, texts: opts.text, backend });
      process.stdout.write(`${JSON.stringify(result)}\n`);
    });
}
