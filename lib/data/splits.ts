// ChestX-ray14 splits. NIH publishes train_val_list.txt and test_list.txt, which are
// patient-disjoint. The validation split is carved from train_val by patient, so that no
// patient's images are in both train and val. The choice is seeded and repeatable.
import fs from 'node:fs';
import path from 'node:path';
import type { Sample, Split } from './dataset.ts';
import { createRng, shuffleInPlace } from '../util/rng.ts';

export const TRAIN_VAL_LIST = 'train_val_list.txt';
export const TEST_LIST = 'test_list.txt';

export const DEFAULT_VAL_FRACTION = 0.1;

export interface OfficialSplit {
  trainVal: Set<string>;
  test: Set<string>;
}

/** Reads one image name per line, ignoring blank lines and surrounding spaces. */
export function readImageList(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`Failed to read split list ${file}: ${(err as Error).message}. The NIH download includes ${TRAIN_VAL_LIST} and ${TEST_LIST} beside the label file.`);
  }
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line.length > 0);
}

/** Reads the official train_val and test lists from `dir` and checks that they share no image. */
export function readOfficialSplit(dir: string): OfficialSplit {
  const trainVal = new Set(readImageList(path.join(dir, TRAIN_VAL_LIST)));
  const test = new Set(readImageList(path.join(dir, TEST_LIST)));
  const shared = [...test].filter((name) => trainVal.has(name));
  if (shared.length > 0) {
    throw new Error(`${shared.length} image(s) are in both ${TRAIN_VAL_LIST} and ${TEST_LIST} in ${dir}, e.g. ${shared.slice(0, 3).join(', ')}. Restore the official lists.`);
  }
  return { trainVal, test };
}

/**
 * Chooses the validation patients among `patients` (the train_val patients): a seeded shuffle of
 * the sorted unique ids, of which the first round(fraction * count) become validation.
 */
export function chooseValidationPatients(patients: Iterable<string>, fraction: number, seed: number): Set<string> {
  if (!(fraction >= 0 && fraction < 1)) {
    throw new Error(`Invalid validation fraction ${fraction}: use a number in [0, 1), e.g. ${DEFAULT_VAL_FRACTION}.`);
  }
  const unique = [...new Set(patients)].sort();
  shuffleInPlace(unique, createRng(seed));
  return new Set(unique.slice(0, Math.round(fraction * unique.length)));
}

/** Throws when a patient has images in two splits, naming the patient, the splits and an image of each. */
export function assertPatientDisjoint(samples: Iterable<Sample>): void {
  const seen = new Map<string, { split: Split; image: string }>();
  for (const sample of samples) {
    const first = seen.get(sample.patient);
    if (!first) {
      seen.set(sample.patient, { split: sample.split, image: sample.id });
    } else if (first.split !== sample.split) {
      throw new Error(
        `Patient ${sample.patient} is in two splits: ${first.image} in ${first.split} and ${sample.id} in ${sample.split}. ` +
          `Images of one patient must share a split; check the split lists against the label file's Patient ID column.`,
      );
    }
  }
}
