// On-disk cache of forgetting "before": the pretrained image tower's zero-shot top-1 accuracy on
// a source set. It depends only on the checkpoint, the images sampled from the set, its class
// names, the prompt templates, the seed and the preprocessing. The freeze plan and the training
// settings do not change it, so the training runs of a study share one measurement.
//
//   <cacheDir>/<key>.json   SourceAccuracy of one set
//
// The key hashes all of those inputs, including each sampled file's size and modification time,
// so that a changed image folder is measured again. Entries are written atomically, and an
// unreadable entry is measured again.
import fs from 'node:fs';
import path from 'node:path';
import type { ImageFolderSample, ImageFolderSet } from '../data/imageFolder.ts';
import type { SourceAccuracy } from '../eval/forgetting.ts';
import { readJson, writeJsonAtomic } from '../util/atomic.ts';
import { sha256Json } from '../util/hash.ts';
import { moduleLog } from '../util/log.ts';

const logger = moduleLog('forgetting-cache');

export interface ForgettingBeforeInputs {
  checkpointSha256: string;
  set: ImageFolderSet;
  /** The images measured: the seeded sample of `set`. */
  samples: ImageFolderSample[];
  limitPerClass: number | null;
  seed: number;
  templates: string[];
  preprocessKey: string;
}

export class ForgettingBeforeCache {
  constructor(readonly dir: string) {}

  /** Returns the path of the entry for `inputs`. */
  file(inputs: ForgettingBeforeInputs): string {
    return path.join(this.dir, `${sha256Json(cacheKey(inputs)).slice(0, 32)}.json`);
  }

  /** Returns the cached accuracy, or null when there is none or the entry is unreadable. */
  get(inputs: ForgettingBeforeInputs): SourceAccuracy | null {
    const file = this.file(inputs);
    if (!fs.existsSync(file)) return null;
    try {
      const entry = readJson<SourceAccuracy>(file);
      if (typeof entry?.accuracy !== 'number' || typeof entry.n !== 'number') throw new Error("its 'accuracy' or 'n' is missing");
      return entry;
    } catch (err) {
      logger.warn(`Ignoring unreadable forgetting cache entry ${file}: ${(err as Error).message}. The set is measured again.`);
      return null;
    }
  }

  put(inputs: ForgettingBeforeInputs, accuracy: SourceAccuracy): void {
    fs.mkdirSync(this.dir, { recursive: true });
    writeJsonAtomic(this.file(inputs), accuracy);
  }
}

function cacheKey(inputs: ForgettingBeforeInputs): Record<string, unknown> {
  const files = inputs.samples.map((sample) => {
    const stat = fs.statSync(sample.file);
    return [path.relative(inputs.set.root, sample.file), sample.label, stat.size, stat.mtimeMs];
  });
  return {
    format: 'clipfreeze-forgetting-before-1',
    checkpointSha256: inputs.checkpointSha256,
    root: inputs.set.root,
    classNames: inputs.set.classNames,
    files,
    limitPerClass: inputs.limitPerClass,
    seed: inputs.seed,
    templates: inputs.templates,
    preprocessKey: inputs.preprocessKey,
  };
}
