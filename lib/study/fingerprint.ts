// Fingerprints of a trial's inputs. The study puts them into every TrialSpec. A worker on another
// machine computes the same two values from its own copies and rejects a trial whose values
// differ, so a trial never runs against another checkpoint or another copy of the data.
import fs from 'node:fs';
import path from 'node:path';
import { resolveFiles } from '../clip/checkpoint.ts';
import { sha256File, sha256Json } from '../util/hash.ts';

/** Text files up to this size are fingerprinted by content (label files, split lists); others by size. */
const CONTENT_HASH_MAX_BYTES = 64 << 20;
const CONTENT_HASH_FILE = /\.(csv|txt|json|tsv)$/i;

/**
 * Returns the SHA-256 of a checkpoint exactly as loadCheckpoint reports it: the digest of its one
 * safetensors file, or for a sharded checkpoint the SHA-256 of the `{file name: digest}` map.
 * Only the files the loader would read count, so a pytorch_model.bin next to model.safetensors
 * does not change it.
 */
export function checkpointSha256(checkpoint: string): string {
  const { files } = resolveFiles(checkpoint);
  if (files.length === 1) return sha256File(files[0]);
  const digests: Record<string, string> = {};
  for (const file of files) digests[path.basename(file)] = sha256File(file);
  return sha256Json(digests);
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
