// Train/val/test assignment by scan or case for the volume datasets (LUNA16, BraTS). Slices of
// one volume are strongly correlated, so every slice of a scan, and every scan of a patient,
// goes to one split. The assignment is either given (a map or a CSV file) or seeded.
import fs from 'node:fs';
import type { Split } from './dataset.ts';
import { SPLITS } from './dataset.ts';
import { createRng, shuffleInPlace } from '../util/rng.ts';

export interface SplitFractions {
  train: number;
  val: number;
  test: number;
}

export const DEFAULT_SPLIT_FRACTIONS: SplitFractions = { train: 0.6, val: 0.2, test: 0.2 };

/** Parses a split name: train, val or test, or the folder spellings training, valid, validation and testing. Returns null for anything else. */
export function parseSplitName(value: string): Split | null {
  const name = value.trim().toLowerCase();
  if (name === 'train' || name === 'training') return 'train';
  if (name === 'val' || name === 'valid' || name === 'validation') return 'val';
  if (name === 'test' || name === 'testing') return 'test';
  return null;
}

/**
 * Reads a split file: a CSV with a header row whose first column is the scan, case or patient
 * id and whose second column is train, val or test.
 */
export function readSplitFile(file: string): Map<string, Split> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new Error(`Failed to read split file ${file}: ${(error as Error).message}`);
  }
  const result = new Map<string, Split>();
  const lines = text.split(/\r?\n/).filter((line) => line.trim() !== '');
  lines.slice(1).forEach((line, index) => {
    const [id, splitName] = line.split(',').map((cell) => cell.trim());
    const split = parseSplitName(splitName ?? '');
    if (!id || !split) {
      throw new Error(`Invalid row ${index + 2} "${line}" in split file ${file}: expected "<id>,<train|val|test>".`);
    }
    result.set(id, split);
  });
  return result;
}

/** Returns the split map from the `splits` option, else from `splitFile`, else null. */
export function givenSplits(options: { splits?: Record<string, Split>; splitFile?: string }): Map<string, Split> | null {
  if (options.splits) return new Map(Object.entries(options.splits));
  if (options.splitFile) return readSplitFile(options.splitFile);
  return null;
}

/**
 * Assigns ids (patients, scans or cases) to splits with a seeded shuffle. Ids with a positive
 * finding and ids without are shuffled separately and dealt out in turn, so that each split
 * gets positive volumes when there are enough. Split sizes follow `fractions`, and with at
 * least three ids every split with a non-zero fraction gets at least one.
 */
export function assignSplits(ids: string[], positiveIds: Set<string>, fractions: SplitFractions, seed: number): Map<string, Split> {
  const total = fractions.train + fractions.val + fractions.test;
  if (!SPLITS.every((split) => fractions[split] >= 0) || !(total > 0)) {
    throw new Error(`Invalid split fractions ${JSON.stringify(fractions)}: each must be >= 0 and their sum > 0, e.g. ${JSON.stringify(DEFAULT_SPLIT_FRACTIONS)}.`);
  }
  const unique = [...new Set(ids)].sort();
  const targets = splitSizes(unique.length, fractions, total);

  const rng = createRng(seed);
  const positives = shuffleInPlace(unique.filter((id) => positiveIds.has(id)), rng);
  const negatives = shuffleInPlace(unique.filter((id) => !positiveIds.has(id)), rng);

  // Deal each id to the split furthest below its target share. Test is served first on ties,
  // so the held-out split gets a positive volume before train and val do.
  const order: Split[] = ['test', 'train', 'val'];
  const counts: Record<Split, number> = { train: 0, val: 0, test: 0 };
  const result = new Map<string, Split>();
  for (const id of [...positives, ...negatives]) {
    let best: Split | null = null;
    for (const split of order) {
      if (counts[split] >= targets[split]) continue;
      if (best === null || 1 - counts[split] / targets[split] > 1 - counts[best] / targets[best]) best = split;
    }
    const chosen = best ?? 'train';
    counts[chosen]++;
    result.set(id, chosen);
  }
  return result;
}

function splitSizes(n: number, fractions: SplitFractions, total: number): Record<Split, number> {
  const exact = SPLITS.map((split) => (n * fractions[split]) / total);
  const sizes = exact.map(Math.floor);
  const remainderOrder = [0, 1, 2].sort((a, b) => exact[b] - sizes[b] - (exact[a] - sizes[a]));
  for (let r = 0; sizes.reduce((a, b) => a + b, 0) < n; r++) sizes[remainderOrder[r % 3]]++;

  // With three or more ids, take one from the largest split for any empty split that should exist.
  if (n >= 3) {
    for (let s = 0; s < 3; s++) {
      if (sizes[s] > 0 || fractions[SPLITS[s]] === 0) continue;
      const largest = sizes.indexOf(Math.max(...sizes));
      sizes[largest]--;
      sizes[s]++;
    }
  }
  return { train: sizes[0], val: sizes[1], test: sizes[2] };
}

/** Throws when `options` has a key outside `known`, naming the key and the accepted keys. */
export function rejectUnknownOptions(options: object, known: readonly string[], dataset: string): void {
  const unknown = Object.keys(options).filter((key) => !known.includes(key));
  if (unknown.length > 0) {
    throw new Error(`Unknown ${dataset} option(s) ${unknown.join(', ')}. Accepted options: ${known.join(', ')}.`);
  }
}
