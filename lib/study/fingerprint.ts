// Fingerprints of a trial's inputs. The study puts them into every TrialSpec. A worker on another
// machine computes the same two values from its own copies and rejects a trial whose values
// differ, so a trial never runs against another checkpoint or another copy of the data.
import fs from 'node:fs';
import path from 'node:path';
import { sha256File, sha256Json } from '../util/hash.ts';

const WEIGHT_FILE = /\.(safetensors|bin|pt|pth)$/i;

/** Text files up to this size are fingerprinted by content (label files, split lists); others by size. */
const CONTENT_HASH_MAX_BYTES = 64 << 20;
const CONTENT_HASH_FILE = /\.(csv|txt|json|tsv)$/i;

/**
 * Returns the SHA-256 of a checkpoint: of the file itself, or for a folder, of its one weight file
 * (.safetensors, .bin, .pt, .pth). A folder with several weight files gets the SHA-256 of the
 * sorted list of `name sha256` lines. Throws when the path contains no weight file.
 */
export function checkpointSha256(checkpoint: string): string {
  if (!fs.existsSync(checkpoint)) {
    throw new Error(`Checkpoint not found: ${checkpoint}. Pass the folder or .safetensors file of a CLIP checkpoint.`);
  }
  if (fs.statSync(checkpoint).isFile()) return sha256File(checkpoint);

  const weights = fs
    .readdirSync(checkpoint)
    .filter((name) => WEIGHT_FILE.test(name))
    .sort();
  if (weights.length === 0) {
    throw new Error(`No weight file (.safetensors, .bin, .pt, .pth) in checkpoint folder ${checkpoint}.`);
  }
  if (weights.length === 1) return sha256File(path.join(checkpoint, weights[0]));
  return sha256Json(weights.map((name) => `${name} ${sha256File(path.join(checkpoint, name))}`));
}

/**
 * Returns a fingerprint of a data folder: the SHA-256 over every file's relative path and size,
 * plus the content of label and split files (.csv, .txt, .json, .tsv up to 64 MiB). Hidden
 * files and folders (names starting with '.') are left out, so caches kept there do not count.
 * Images are fingerprinted by name and size only, which keeps this fast on 100,000 images.
 */
export function dataFingerprint(dataDir: string): string {
  if (!fs.existsSync(dataDir) || !fs.statSync(dataDir).isDirectory()) {
    throw new Error(`Data folder not found: ${dataDir}. Pass the folder that contains the dataset's label files and images.`);
  }

  const entries: Array<[string, number, string | null]> = [];
  const walk = (dir: string, prefix: string) => {
    for (const dirent of fs.readdirSync(dir, { withFileTypes: true })) {
      if (dirent.name.startsWith('.')) continue;
      const full = path.join(dir, dirent.name);
      const relative = prefix ? `${prefix}/${dirent.name}` : dirent.name;
      if (dirent.isDirectory()) {
        walk(full, relative);
      } else if (dirent.isFile() || dirent.isSymbolicLink()) {
        const stat = fs.statSync(full);
        if (!stat.isFile()) continue;
        const content = CONTENT_HASH_FILE.test(dirent.name) && stat.size <= CONTENT_HASH_MAX_BYTES ? sha256File(full) : null;
        entries.push([relative, stat.size, content]);
      }
    }
  };
  walk(dataDir, '');

  // Code-unit order, not localeCompare, so every machine sorts the paths the same way.
  entries.sort((a, b) => {
    if (a[0] === b[0]) return 0;
    return a[0] < b[0] ? -1 : 1;
  });
  return sha256Json(entries);
}
