// The interface every target dataset implements (ChestX-ray14, LUNA16, BraTS), so that
// training, evaluation and layer selection never depend on one dataset's file layout.
import type { PreprocessConfig } from '../clip/preprocess.ts';

export type Split = 'train' | 'val' | 'test';

export const SPLITS: readonly Split[] = ['train', 'val', 'test'];

/** One image (or slice) with its multi-label targets. */
export interface Sample {
  /** Image identifier, unique within the dataset, e.g. `00000001_000.png`. */
  id: string;
  /** Patient identifier. All images of one patient are in one split. */
  patient: string;
  split: Split;
  /** 0/1 per finding, in the order of `TargetDataset.findings`. */
  labels: number[];
}

/** Counts of samples that were listed but could not be used. */
export interface SkipCounts {
  /** Listed in the label file but absent from the image folders. */
  missing: number;
  /** Present but could not be decoded. */
  corrupt: number;
}

export interface TargetDataset {
  name: string;
  /** Finding names in label order. */
  findings: string[];
  samples(split: Split): Sample[];
  /**
   * Loads and preprocesses one sample to CHW float pixels (3*size*size).
   * Returns null when the image is skipped (absent or corrupt); the skip is logged and counted.
   */
  loadPixels(sample: Sample, cfg: PreprocessConfig): Promise<Float32Array | null>;
  /** Path of the zero-shot prompt templates for this dataset. */
  promptsFile: string;
  /** Summary for run records and logs: folder, counts per split, options. */
  describe(): Record<string, unknown>;
  skipped(): SkipCounts;
}
