// Persistent on-disk cache of preprocessed pixels, so that a second run over the same images
// does not decode and resize them again. An entry is keyed by the image's absolute path, byte
// size, modification time and the preprocessing key, so editing an image or changing the
// resolution or normalisation makes a new entry.
//
// Entry layout (little-endian): magic 'CFPX', format version (u32), float count (u32),
// CRC-32 of the float bytes (u32), then the float32 pixels. Entries are written to a temporary
// file and renamed, so readers never see a partial entry. They are not fsynced, because a
// cache entry can always be recomputed, and the CRC catches one left torn by a power loss.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { moduleLog } from '../util/log.ts';

const logger = moduleLog('pixel-cache');

const MAGIC = 0x58504643; // 'CFPX' read as a little-endian u32
const FORMAT_VERSION = 1;
const HEADER_BYTES = 16;

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
   * and stores them. Errors from `compute` propagate and nothing is stored.
   */
  async getOrCompute(file: string, preprocessKey: string, compute: () => Promise<Float32Array>): Promise<Float32Array> {
    const entry = this.entryPath(file, preprocessKey);
    const cached = entry ? this.read(entry) : null;
    if (cached) {
      this.stats.hits++;
      return cached;
    }

    this.stats.misses++;
    const pixels = await compute();
    if (entry) this.write(entry, pixels);
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

    // Copy into an aligned buffer: a Buffer's byteOffset may not be a multiple of 4.
    const count = bytes.readUInt32LE(8);
    const pixels = new Float32Array(count);
    new Uint8Array(pixels.buffer).set(bytes.subarray(HEADER_BYTES, HEADER_BYTES + count * 4));
    return pixels;
  }

  private write(entry: string, pixels: Float32Array): void {
    const data = new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.byteLength);
    const header = Buffer.alloc(HEADER_BYTES);
    header.writeUInt32LE(MAGIC, 0);
    header.writeUInt32LE(FORMAT_VERSION, 4);
    header.writeUInt32LE(pixels.length, 8);
    header.writeUInt32LE(zlib.crc32(data), 12);

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
  if (bytes.length !== HEADER_BYTES + count * 4) return `${bytes.length} bytes, expected ${HEADER_BYTES + count * 4} for ${count} floats`;
  if (zlib.crc32(bytes.subarray(HEADER_BYTES)) !== bytes.readUInt32LE(12)) return 'checksum mismatch';
  return null;
}
