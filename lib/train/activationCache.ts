// On-disk cache of the frozen prefix's output per image. The prefix's weights never change
// during a run, and training uses no augmentation, so the same image always gives the same
// prefix output. Later epochs, every validation pass and later runs with the same checkpoint,
// preprocessing and split point read it back instead of recomputing it.
//
//   <cacheDir>/<key>/<image id>.f32    float32 values of the prefix output, little-endian
//
// The key hashes the checkpoint's SHA-256, the preprocessing key, the last frozen unit and the
// output shape. Entries are written to a temporary file and renamed, and a file of the wrong
// size is treated as missing, so a crash never serves a partial entry.
import fs from 'node:fs';
import path from 'node:path';
import { sha256Json } from '../util/hash.ts';
import { moduleLog } from '../util/log.ts';

const logger = moduleLog('activation-cache');

export interface ActivationCacheKey {
  checkpointSha256: string;
  preprocessKey: string;
  /** The last frozen unit, e.g. 'vision.block.7'. */
  lastFrozenUnit: string;
  /** Values per image, e.g. [50, 768]. */
  shape: number[];
}

export class ActivationCache {
  readonly dir: string;
  readonly valuesPerImage: number;
  hits = 0;
  misses = 0;

  constructor(root: string, key: ActivationCacheKey) {
    this.dir = path.join(root, sha256Json(key).slice(0, 24));
    this.valuesPerImage = key.shape.reduce((a, b) => a * b, 1);
    fs.mkdirSync(this.dir, { recursive: true });
    const keyFile = path.join(this.dir, 'key.json');
    if (!fs.existsSync(keyFile)) fs.writeFileSync(keyFile, JSON.stringify(key, null, 2) + '\n');
  }

  /** Returns the cached output of one image, or null when it is absent or damaged. */
  get(imageId: string): Float32Array | null {
    const file = this.file(imageId);
    let bytes: Buffer;
    try {
      bytes = fs.readFileSync(file);
    } catch {
      this.misses++;
      return null;
    }
    if (bytes.byteLength !== this.valuesPerImage * 4) {
      logger.warn(`Ignoring damaged activation cache entry ${file}: ${bytes.byteLength} bytes, expected ${this.valuesPerImage * 4}.`);
      this.misses++;
      return null;
    }
    this.hits++;
    const values = new Float32Array(this.valuesPerImage);
    new Uint8Array(values.buffer).set(bytes);
    return values;
  }

  put(imageId: string, values: Float32Array): void {
    if (values.length !== this.valuesPerImage) {
      throw new Error(`Activation cache entry for ${imageId} has ${values.length} values, expected ${this.valuesPerImage}.`);
    }
    const file = this.file(imageId);
    const tmp = `${file}.tmp-${process.pid}`;
    fs.writeFileSync(tmp, new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
    fs.renameSync(tmp, file);
  }

  private file(imageId: string): string {
    return path.join(this.dir, `${encodeURIComponent(imageId)}.f32`);
  }
}
