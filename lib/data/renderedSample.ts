// Pixels of a sample rendered from a CT or MRI volume. A volume that is missing or damaged
// skips the sample with a logged error and a count, as a corrupt image does for ChestX-ray14.
import type pino from 'pino';
import { preprocessImage, type PreprocessConfig, type RawImage } from '../clip/preprocess.ts';
import type { Sample, SkipCounts } from './dataset.ts';
import { VolumeFormatError } from './volume.ts';

/**
 * Renders `sample` with `render` and preprocesses it for CLIP. Returns null, counted in
 * `skipCounts`, when the volume file is missing or unreadable; other errors propagate.
 */
export async function preprocessRendered(
  sample: Sample,
  cfg: PreprocessConfig,
  render: (sample: Sample) => RawImage,
  skipCounts: SkipCounts,
  logger: pino.Logger,
  volumeKind: string,
): Promise<Float32Array | null> {
  let image: RawImage;
  try {
    image = render(sample);
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    if (!(error instanceof VolumeFormatError) && !missing) throw error;
    if (missing) skipCounts.missing++;
    else skipCounts.corrupt++;
    logger.error({ sample: sample.id, err: (error as Error).message }, `skipping sample: its ${volumeKind} could not be read`);
    return null;
  }
  return preprocessImage(image, cfg);
}
