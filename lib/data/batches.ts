// Loads the pixels of many samples into one NCHW buffer, skipping images that fail to load.
import type { PreprocessConfig } from '../clip/preprocess.ts';
import type { Sample, TargetDataset } from './dataset.ts';
import { moduleLog } from '../util/log.ts';
import { createProgress, type Progress } from '../util/progress.ts';

const logger = moduleLog('batches');

export interface LoadBatchOptions {
  /** Images decoded at the same time. Default 4. */
  concurrency?: number;
  /** Show a progress bar from this many samples on. Default 64. */
  progressFrom?: number;
  /** Progress bar label. Default 'Loading images'. */
  label?: string;
}

export interface Batch {
  /** [kept.length, 3, size, size] float32, NCHW. */
  pixels: Float32Array;
  /** The samples whose pixels are in `pixels`, in order. Skipped samples are left out. */
  kept: Sample[];
}

/** Loads and preprocesses `samples`. Samples whose image is missing or corrupt are left out of `kept`. */
export async function loadBatch(dataset: TargetDataset, samples: Sample[], cfg: PreprocessConfig, options: LoadBatchOptions = {}): Promise<Batch> {
  const concurrency = Math.max(1, options.concurrency ?? 4);
  const imageFloats = 3 * cfg.size * cfg.size;
  const results = new Array<Float32Array | null>(samples.length).fill(null);
  const progress: Progress | null =
    samples.length >= (options.progressFrom ?? 64) ? createProgress(options.label ?? 'Loading images', samples.length) : null;

  // A small pool of workers, each taking the next index, keeps `concurrency` decodes in flight.
  let next = 0;
  let skipped = 0;
  const worker = async () => {
    while (next < samples.length) {
      const index = next++;
      const pixels = await dataset.loadPixels(samples[index], cfg);
      if (pixels && pixels.length !== imageFloats) {
        throw new Error(`Image ${samples[index].id} has ${pixels.length} values after preprocessing; expected 3*${cfg.size}*${cfg.size} = ${imageFloats}.`);
      }
      if (!pixels) skipped++;
      results[index] = pixels;
      progress?.tick(1, { skipped });
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, samples.length) }, worker));
  } finally {
    progress?.stop();
  }

  const kept: Sample[] = [];
  const pixels = new Float32Array((samples.length - skipped) * imageFloats);
  results.forEach((image, i) => {
    if (!image) return;
    pixels.set(image, kept.length * imageFloats);
    kept.push(samples[i]);
  });
  if (skipped > 0) {
    logger.warn(`Skipped ${skipped} of ${samples.length} image(s) of this batch that could not be loaded (${dataset.skipped().corrupt} corrupt in this dataset so far, each named when first seen).`);
  }
  return { pixels, kept };
}
