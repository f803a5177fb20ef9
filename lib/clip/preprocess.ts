// CLIP image preprocessing, matching openai/CLIP's torchvision transform:
//   Resize(size, BICUBIC) -> CenterCrop(size) -> convert('RGB') -> ToTensor -> Normalize(mean, std)
//
// Images are decoded with sharp (libvips). The resize is a port of Pillow's separable
// antialiased resampler (libImaging/Resample.c) rather than sharp's own resize, because CLIP
// checkpoints were trained on Pillow's output. For 8-bit images it runs a horizontal then a
// vertical pass, each with fixed-point weights, rounding and clipping to 0..255. RGBA images are
// resized with premultiplied alpha as Pillow does, and the alpha channel is then dropped.
import fs from 'node:fs';
import sharp from 'sharp';
import type { ClipConfig } from './config.ts';
import { CLIP_IMAGE_MEAN, CLIP_IMAGE_STD } from './config.ts';

export interface PreprocessConfig {
  /** Output side in pixels: the shortest side is resized to it, then center-cropped to size x size. */
  size: number;
  /** Per-channel RGB mean and standard deviation of the [0, 1] pixel values. */
  mean: [number, number, number];
  std: [number, number, number];
}

/** Decoded pixels in row-major HWC order. Float32 data is expected in [0, 1]. */
export interface RawImage {
  data: Uint8Array | Uint16Array | Float32Array;
  width: number;
  height: number;
  /** 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA. */
  channels: 1 | 2 | 3 | 4;
}

/** Raised when an image file is missing, truncated or not a decodable PNG or JPEG. */
export class ImageDecodeError extends Error {
  readonly file: string;

  constructor(file: string, reason: string, fix = 'Check that the file is a complete PNG or JPEG, or remove it from the dataset.') {
    super(`Failed to decode image ${file}: ${reason}. ${fix}`);
    this.name = 'ImageDecodeError';
    this.file = file;
  }
}

export const DEFAULT_PREPROCESS: PreprocessConfig = { size: 224, mean: CLIP_IMAGE_MEAN, std: CLIP_IMAGE_STD };

/** Version of the pixel pipeline. Bump it when the output changes so that pixel caches are rebuilt. */
const PIPELINE_VERSION = 1;

export function preprocessConfigFrom(config: ClipConfig): PreprocessConfig {
  return { size: config.vision.imageSize, mean: [...config.imageMean], std: [...config.imageStd] };
}

/** Returns a stable string that identifies the preprocessing output, for cache keys. */
export function preprocessKey(cfg: PreprocessConfig): string {
  const numbers = (values: number[]) => values.map((v) => v.toPrecision(8)).join(',');
  return `clip-pil-bicubic-v${PIPELINE_VERSION}:size=${cfg.size}:mean=${numbers(cfg.mean)}:std=${numbers(cfg.std)}`;
}

/** Rejects a path that does not exist or is not a regular file, before sharp reports it as a format error. */
function checkImageFile(file: string): void {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ImageDecodeError(file, 'file not found', 'Check the path.');
    throw new ImageDecodeError(file, (err as Error).message, 'Check the path and its permissions.');
  }
  if (!stat.isFile()) throw new ImageDecodeError(file, 'the path is a directory, not an image file', 'Pass the path of a PNG or JPEG file.');
}

/**
 * Decodes an image file or buffer to raw pixels. 8-bit images come back as RGB or RGBA bytes
 * (grey is replicated to RGB, which gives the same result as Pillow's mode L resize), and
 * 16-bit images as grey or RGB 16-bit values with alpha dropped.
 */
export async function decodeImage(input: string | Buffer): Promise<RawImage> {
  const name = typeof input === 'string' ? input : '<in-memory image>';
  if (typeof input === 'string') checkImageFile(input);
  try {
    // Pillow ignores embedded ICC profiles, so sharp must not convert colours either.
    const image = sharp(input, { ignoreIcc: true, failOn: 'error' });
    const meta = await image.metadata();
    if (!meta.width || !meta.height) throw new Error('the image size is missing from its header');

    if (meta.depth === 'ushort') {
      const grey = (meta.channels ?? 1) <= 2;
      const { data, info } = await image
        .removeAlpha()
        .toColourspace(grey ? 'grey16' : 'rgb16')
        .raw({ depth: 'ushort' })
        .toBuffer({ resolveWithObject: true });
      const pixels = new Uint16Array(data.buffer, data.byteOffset, data.byteLength / 2);
      return { data: pixels, width: info.width, height: info.height, channels: info.channels as 1 | 3 };
    }

    const { data, info } = await image.raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3 && info.channels !== 4) throw new Error(`decoded to ${info.channels} channels, expected 3 or 4`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height, channels: info.channels };
  } catch (err) {
    if (err instanceof ImageDecodeError) throw err;
    throw new ImageDecodeError(name, (err as Error).message);
  }
}

/**
 * Preprocesses one image to normalised CHW float32 pixels (3 * size * size): resize the
 * shortest side to `size` with Pillow's antialiased bicubic, center crop, RGB, scale to [0, 1],
 * normalise with mean and std.
 */
export async function preprocessImage(input: string | Buffer | RawImage, cfg: PreprocessConfig): Promise<Float32Array> {
  const raw = typeof input === 'string' || Buffer.isBuffer(input) ? await decodeImage(input) : input;
  validateRawImage(raw);

  const [width, height] = resizedSize(raw.width, raw.height, cfg.size);
  const resized = raw.data instanceof Uint8Array ? resize8bit(raw, width, height) : resizeFloat(toFloat(raw), width, height);
  const top = roundHalfToEven((height - cfg.size) / 2);
  const left = roundHalfToEven((width - cfg.size) / 2);
  return cropAndNormalise(resized, top, left, cfg);
}

/**
 * Returns the resized width and height as torchvision's Resize(int) computes them: the shortest
 * side becomes `size` and the other side is scaled and truncated.
 */
export function resizedSize(width: number, height: number, size: number): [number, number] {
  const short = Math.min(width, height);
  const long = Math.max(width, height);
  if (short === size) return [width, height];
  const newLong = Math.floor((size * long) / short);
  return width <= height ? [size, newLong] : [newLong, size];
}

/** Rounds as Python's round() does: halves go to the nearest even integer. */
function roundHalfToEven(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

function validateRawImage(raw: RawImage): void {
  const expected = raw.width * raw.height * raw.channels;
  if (![1, 2, 3, 4].includes(raw.channels)) throw new Error(`Invalid raw image: ${raw.channels} channels (expected 1, 2, 3 or 4).`);
  if (!(raw.width > 0 && raw.height > 0)) throw new Error(`Invalid raw image size ${raw.width}x${raw.height}.`);
  if (raw.data.length !== expected) {
    throw new Error(`Invalid raw image: ${raw.data.length} values for ${raw.width}x${raw.height}x${raw.channels} (expected ${expected}).`);
  }
}

// ---------------------------------------------------------------------------------------------
// Pillow's resampler. Coefficients per output pixel: a bicubic kernel (a = -0.5, support 2)
// stretched by the downscale factor, so that a downscale averages over every input pixel.

const BICUBIC_SUPPORT = 2;
/** Fixed-point precision of Pillow's 8-bit resampler: 32 - 8 - 2 bits. */
const PRECISION_BITS = 22;

function bicubic(x: number): number {
  const a = -0.5;
  const t = Math.abs(x);
  if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
  return 0;
}

interface Coefficients {
  /** Kernel length per output pixel. */
  kernelSize: number;
  /** First input index and number of used inputs per output pixel: [start0, count0, start1, ...]. */
  bounds: Int32Array;
  /** Normalised weights, kernelSize per output pixel. */
  weights: Float64Array;
}

function computeCoefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = BICUBIC_SUPPORT * filterScale;
  const kernelSize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Float64Array(outSize * kernelSize);

  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // Pillow rounds the window ends with a C (int) cast, which truncates toward zero.
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      const w = bicubic((x + xmin - center + 0.5) / filterScale);
      weights[xx * kernelSize + x] = w;
      total += w;
    }
    if (total !== 0) for (let x = 0; x < xmax; x++) weights[xx * kernelSize + x] /= total;
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { kernelSize, bounds, weights };
}

/** Converts weights to Pillow's fixed point, rounding half away from zero. */
function fixedPointWeights(weights: Float64Array): Int32Array {
  const out = new Int32Array(weights.length);
  const one = 1 << PRECISION_BITS;
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i] * one;
    out[i] = w < 0 ? Math.trunc(w - 0.5) : Math.trunc(w + 0.5);
  }
  return out;
}

/** Fixed-point sum back to a byte: shift out the precision bits and clip to 0..255. */
function clip8(sum: number): number {
  const v = Math.floor(sum / (1 << PRECISION_BITS));
  return Math.min(255, Math.max(0, v));
}

/** Resizes 8-bit RGB or RGBA pixels exactly as Pillow's Image.resize(BICUBIC) does. */
function resize8bit(raw: RawImage, outWidth: number, outHeight: number): RawImage {
  if (raw.width === outWidth && raw.height === outHeight) return raw;
  let current = reduceChannels(raw);
  const hasAlpha = current.channels === 2 || current.channels === 4;
  if (hasAlpha) current = { ...current, data: premultiplyAlpha(current.data as Uint8Array, current.channels) };

  if (outWidth !== current.width) current = resizeRows8bit(current, outWidth);
  if (outHeight !== current.height) current = resizeColumns8bit(current, outHeight);

  if (hasAlpha) current = { ...current, data: unpremultiplyAlpha(current.data as Uint8Array, current.channels) };
  return current;
}

/**
 * Drops channels that cannot change the result, to save work: an alpha channel that is 255
 * everywhere (premultiplying by it is the identity, and its resized value stays 255), and
 * RGB channels that are equal everywhere (each channel is resized independently). ChestX-ray14
 * images are grey, some stored as RGBA, so this makes their resize 3 to 4 times cheaper.
 */
function reduceChannels(raw: RawImage): RawImage {
  const data = raw.data as Uint8Array;
  const { channels } = raw;
  const pixels = raw.width * raw.height;

  let opaque = channels === 2 || channels === 4;
  for (let p = channels - 1; opaque && p < data.length; p += channels) opaque = data[p] === 255;
  const colour = channels >= 3;
  let grey = colour;
  for (let p = 0; grey && p < data.length; p += channels) grey = data[p] === data[p + 1] && data[p] === data[p + 2];

  if (!opaque && !grey) return raw;
  if (grey && (opaque || channels === 3)) {
    const out = new Uint8Array(pixels);
    for (let p = 0; p < pixels; p++) out[p] = data[p * channels];
    return { ...raw, data: out, channels: 1 };
  }
  if (grey) {
    const out = new Uint8Array(pixels * 2);
    for (let p = 0; p < pixels; p++) {
      out[p * 2] = data[p * channels];
      out[p * 2 + 1] = data[p * channels + 3];
    }
    return { ...raw, data: out, channels: 2 };
  }
  const kept = channels - 1;
  const out = new Uint8Array(pixels * kept);
  for (let p = 0; p < pixels; p++) for (let c = 0; c < kept; c++) out[p * kept + c] = data[p * channels + c];
  return { ...raw, data: out, channels: kept as 1 | 3 };
}

/** Horizontal pass: output pixel (y, x) sums input pixels (y, start..start+count) with fixed-point weights. */
function resizeRows8bit(image: RawImage, outWidth: number): RawImage {
  const { width, height, channels } = image;
  const input = image.data as Uint8Array;
  const { kernelSize, bounds, weights } = computeCoefficients(width, outWidth);
  const kernel = fixedPointWeights(weights);
  const output = new Uint8Array(outWidth * height * channels);
  const half = 1 << (PRECISION_BITS - 1);

  for (let y = 0; y < height; y++) {
    const rowIn = y * width * channels;
    const rowOut = y * outWidth * channels;
    for (let x = 0; x < outWidth; x++) {
      const start = rowIn + bounds[x * 2] * channels;
      const count = bounds[x * 2 + 1];
      const k = x * kernelSize;
      for (let c = 0; c < channels; c++) {
        let sum = half;
        for (let i = 0; i < count; i++) sum += input[start + i * channels + c] * kernel[k + i];
        output[rowOut + x * channels + c] = clip8(sum);
      }
    }
  }
  return { data: output, width: outWidth, height, channels };
}

/** Vertical pass: output row y is the weighted sum of input rows start..start+count, accumulated row by row. */
function resizeColumns8bit(image: RawImage, outHeight: number): RawImage {
  const { width, height, channels } = image;
  const input = image.data as Uint8Array;
  const { kernelSize, bounds, weights } = computeCoefficients(height, outHeight);
  const kernel = fixedPointWeights(weights);
  const rowLength = width * channels;
  const output = new Uint8Array(rowLength * outHeight);
  // Sums stay below 2^31 (255 * 2^22 * the sum of positive weights), so they are exact in float64.
  const sums = new Float64Array(rowLength);

  for (let y = 0; y < outHeight; y++) {
    const start = bounds[y * 2];
    const count = bounds[y * 2 + 1];
    sums.fill(1 << (PRECISION_BITS - 1));
    for (let i = 0; i < count; i++) {
      const weight = kernel[y * kernelSize + i];
      const rowIn = (start + i) * rowLength;
      for (let j = 0; j < rowLength; j++) sums[j] += input[rowIn + j] * weight;
    }
    const rowOut = y * rowLength;
    for (let j = 0; j < rowLength; j++) output[rowOut + j] = clip8(sums[j]);
  }
  return { data: output, width, height: outHeight, channels };
}

/** Pillow's RGBA -> RGBa conversion: colour * alpha / 255 with its integer rounding. */
function premultiplyAlpha(pixels: Uint8Array, channels: number): Uint8Array {
  const out = new Uint8Array(pixels);
  for (let p = 0; p < pixels.length; p += channels) {
    const alpha = pixels[p + channels - 1];
    for (let c = 0; c < channels - 1; c++) {
      const tmp = pixels[p + c] * alpha + 128;
      out[p + c] = ((tmp >> 8) + tmp) >> 8;
    }
  }
  return out;
}

/** Pillow's RGBa -> RGBA conversion: colour * 255 / alpha, truncated and clipped. */
function unpremultiplyAlpha(pixels: Uint8Array, channels: number): Uint8Array {
  const out = new Uint8Array(pixels);
  for (let p = 0; p < pixels.length; p += channels) {
    const alpha = pixels[p + channels - 1];
    if (alpha === 0 || alpha === 255) continue;
    for (let c = 0; c < channels - 1; c++) out[p + c] = Math.min(255, Math.floor((255 * pixels[p + c]) / alpha));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// High bit depth path. NOTE: this path does not reproduce Pillow's handling of 16-bit images. It
// scales values to [0, 1] (16-bit / 65535) and resizes in floating point with the same kernel and
// no rounding, so the full range of a 16-bit X-ray reaches the model.

function toFloat(raw: RawImage): RawImage {
  if (raw.data instanceof Float32Array) return raw;
  const scale = raw.data instanceof Uint16Array ? 65535 : 255;
  const data = new Float32Array(raw.data.length);
  for (let i = 0; i < data.length; i++) data[i] = raw.data[i] / scale;
  return { ...raw, data };
}

function resizeFloat(raw: RawImage, outWidth: number, outHeight: number): RawImage {
  let current = raw;
  if (outWidth !== raw.width) current = resizePassFloat(current, outWidth, 'horizontal');
  if (outHeight !== raw.height) current = resizePassFloat(current, outHeight, 'vertical');
  return current;
}

function resizePassFloat(image: RawImage, outSize: number, direction: 'horizontal' | 'vertical'): RawImage {
  const { width, height, channels } = image;
  const input = image.data as Float32Array;
  const horizontal = direction === 'horizontal';
  const { kernelSize, bounds, weights } = computeCoefficients(horizontal ? width : height, outSize);
  const outWidth = horizontal ? outSize : width;
  const outHeight = horizontal ? height : outSize;
  const output = new Float32Array(outWidth * outHeight * channels);
  const stride = horizontal ? channels : width * channels;
  const lines = horizontal ? height : width;

  for (let o = 0; o < outSize; o++) {
    const start = bounds[o * 2];
    const count = bounds[o * 2 + 1];
    const k = o * kernelSize;
    for (let line = 0; line < lines; line++) {
      const inBase = horizontal ? (line * width + start) * channels : (start * width + line) * channels;
      const outBase = horizontal ? (line * outWidth + o) * channels : (o * outWidth + line) * channels;
      for (let c = 0; c < channels; c++) {
        let sum = 0;
        for (let i = 0; i < count; i++) sum += input[inBase + i * stride + c] * weights[k + i];
        output[outBase + c] = sum;
      }
    }
  }
  return { data: output, width: outWidth, height: outHeight, channels };
}

// ---------------------------------------------------------------------------------------------

/** Crops size x size at (top, left), maps grey to RGB, drops alpha, scales to [0, 1] and normalises to CHW. */
function cropAndNormalise(image: RawImage, top: number, left: number, cfg: PreprocessConfig): Float32Array {
  const { size, mean, std } = cfg;
  const { width, channels, data } = image;
  let scale = 1;
  if (data instanceof Uint8Array) scale = 255;
  if (data instanceof Uint16Array) scale = 65535;
  const colourChannels = channels <= 2 ? 1 : 3;
  const out = new Float32Array(3 * size * size);

  for (let c = 0; c < 3; c++) {
    const source = colourChannels === 1 ? 0 : c;
    const plane = c * size * size;
    const channelMean = Math.fround(mean[c]);
    const channelStd = Math.fround(std[c]);
    for (let y = 0; y < size; y++) {
      const row = (top + y) * width;
      for (let x = 0; x < size; x++) {
        // Float32 steps as torchvision computes them: ToTensor divides, Normalize subtracts and divides.
        const value = Math.fround(data[(row + left + x) * channels + source] / scale);
        out[plane + y * size + x] = Math.fround(Math.fround(value - channelMean) / channelStd);
      }
    }
  }
  return out;
}
