// Persistent on-disk cache of preprocessed pixels, so that a second run over the same images
// does not decode and resize them again. An entry is keyed by the image's absolute path, byte
// size, modification time and the preprocessing key, so editing an image or changing the
// resolution or normalisation makes a new entry.
//
// Entry layout (little-endian): magic 'CFPX', format version (u32), float count (u32), encoding
// (u32, see pixelCodec.ts), mean and std (3 + 3 f32), CRC-32 of the payload (u32), payload.
// Entries are written to a temporary file and renamed, so readers never see a partial entry.
// They are not fsynced, because a cache entry can always be recomputed, and the CRC catches
// one left torn by a power loss.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { moduleLog } from '../util/log.ts';
import { decodePixels, encodePixels, ENCODING_CODES, payloadBytes, type Normalisation, type PixelEncoding } from './pixelCodec.ts';

const logger = moduleLog('pixel-cache');

const MAGIC = 0x58504643; // 'CFPX' read as a little-endian u32
const FORMAT_VERSION = 2;
const HEADER_BYTES = 44;
const ENCODINGS = Object.fromEntries(Object.entries(ENCODING_CODES).map(([name, code]) => [code, name])) as Record<number, PixelEncoding>;

/** Returns the default cache folder: $CLIPFREEZE_CACHE_DIR/pixels, or .cache/pixels under the current directory. */
export function defaultPixelCacheDir(): string {
  const root = process.env.CLIPFREEZE_CACHE_DIR || path.resolve('.cache');
  return path.join(root, 'pixels');
}

export interface PixelCacheStats {
  hits: number;
  misses: number;
  /** Entries that failed validation and were recomputed. */
  corrupt: number;
  /** Entries that could not be written (the pixels were still returned). */
  writeFailures: number;
}

export class PixelCache {
  readonly dir: string;
  readonly stats: PixelCacheStats = { hits: 0, misses: 0, corrupt: 0, writeFailures: 0 };

  constructor(dir: string = defaultPixelCacheDir()) {
    this.dir = path.resolve(dir);
  }

  /**
   * Returns the cached pixels for `file` under `preprocessKey`, or computes them with `compute`
   * and stores them. Errors from `compute` propagate and nothing is stored. With the mean and
   * std of the preprocessing, 8-bit images are stored compactly (see pixelCodec.ts).
   */
  async getOrCompute(file: string, preprocessKey: string, compute: () => Promise<Float32Array>, norm: Normalisation | null = null): Promise<Float32Array> {
    const entry = this.entryPath(file, preprocessKey);
    const cached = entry ? this.read(entry) : null;
    if (cached) {
      this.stats.hits++;
      return cached;
    }

    this.stats.misses++;
    const pixels = await compute();
    if (entry) this.write(entry, pixels, norm);
    return pixels;
  }

  /**
   * Returns the entry path for the file's current size and modification time, or null when the
   * file cannot be stat'ed (the caller's decode then reports the error).
   */
  entryPath(file: string, preprocessKey: string): string | null {
    let stat: fs.Stats;
    try {
      stat = fs.statSync(file);
    } catch {
      return null;
    }
    const key = crypto
      .createHash('sha256')
      .update(JSON.stringify([path.resolve(file), stat.size, stat.mtimeMs, preprocessKey]))
      .digest('hex');
    // Two-character subfolders keep any one folder small for the 112,120 ChestX-ray14 images.
    return path.join(this.dir, key.slice(0, 2), `${key}.f32`);
  }

  private read(entry: string): Float32Array | null {
    let bytes: Buffer;
    try {
      bytes = fs.readFileSync(entry);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') logger.warn(`Failed to read pixel cache entry ${entry}: ${(err as Error).message}. Recomputing.`);
      return null;
    }

    const problem = validateEntry(bytes);
    if (problem) {
      this.stats.corrupt++;
      logger.warn(`Invalid pixel cache entry ${entry} (${problem}). Recomputing it.`);
      return null;
    }

    const count = bytes.readUInt32LE(8);
    const encoding = ENCODINGS[bytes.readUInt32LE(12)];
    const mean = [0, 1, 2].map((c) => bytes.readFloatLE(16 + 4 * c)) as Normalisation['mean'];
    const std = [0, 1, 2].map((c) => bytes.readFloatLE(28 + 4 * c)) as Normalisation['std'];
    return decodePixels(encoding, bytes.subarray(HEADER_BYTES), count, { mean, std });
  }

  private write(entry: string, pixels: Float32Array, norm: Normalisation | null): void {
    const { encoding, data } = encodePixels(pixels, norm);
    const header = Buffer.alloc(HEADER_BYTES);
    header.writeUInt32LE(MAGIC, 0);
    header.writeUInt32LE(FORMAT_VERSION, 4);
    header.writeUInt32LE(pixels.length, 8);
    header.writeUInt32LE(ENCODING_CODES[encoding], 12);
    for (let c = 0; c < 3; c++) {
      header.writeFloatLE(norm ? norm.mean[c] : 0, 16 + 4 * c);
      header.writeFloatLE(norm ? norm.std[c] : 1, 28 + 4 * c);
    }
    header.writeUInt32LE(zlib.crc32(data), 40);

    const tmp = `${entry}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
    try {
      fs.mkdirSync(path.dirname(entry), { recursive: true });
      fs.writeFileSync(tmp, Buffer.concat([header, data]));
      fs.renameSync(tmp, entry);
    } catch (err) {
      this.stats.writeFailures++;
      fs.rmSync(tmp, { force: true });
      if (this.stats.writeFailures <= 3) logger.warn(`Failed to write pixel cache entry ${entry}: ${(err as Error).message}. Continuing without caching it.`);
    }
  }
}

/** Returns why `bytes` is not a valid entry, or null when it is. */
function validateEntry(bytes: Buffer): string | null {
  if (bytes.length < HEADER_BYTES) return `${bytes.length} bytes, shorter than the header`;
  if (bytes.readUInt32LE(0) !== MAGIC) return 'wrong magic number';
  if (bytes.readUInt32LE(4) !== FORMAT_VERSION) return `format version ${bytes.readUInt32LE(4)}, expected ${FORMAT_VERSION}`;
  const count = bytes.readUInt32LE(8);
  const encoding = ENCODINGS[bytes.readUInt32LE(12)];
  if (!encoding) return `unknown encoding ${bytes.readUInt32LE(12)}`;
  if (encoding !== 'float32' && count % 3 !== 0) return `${count} values cannot form 3 channel planes`;
  const expected = HEADER_BYTES + payloadBytes(encoding, count);
  if (bytes.length !== expected) return `${bytes.length} bytes, expected ${expected} for ${count} values as ${encoding}`;
  if (zlib.crc32(bytes.subarray(HEADER_BYTES)) !== bytes.readUInt32LE(40)) return 'checksum mismatch';
  return null;
}
