// Opens a target dataset by name. Each entry maps a name to a function that opens a folder;
// dataset-specific options pass through unchanged.
import type { TargetDataset } from './dataset.ts';
import { ChestXray14Dataset, type ChestXray14Options } from './chestxray14.ts';
import { openBrats, type BratsOptions } from './brats.ts';
import { openLuna16, type Luna16Options } from './luna16.ts';

export type DatasetName = 'chestxray14' | 'luna16' | 'brats';

export type DatasetOpener = (dir: string, options: Record<string, unknown>) => TargetDataset | Promise<TargetDataset>;

const OPENERS: Partial<Record<DatasetName, DatasetOpener>> = {
  chestxray14: (dir, options) => ChestXray14Dataset.open(dir, options as ChestXray14Options),
  luna16: (dir, options) => openLuna16(dir, options as Luna16Options),
  brats: (dir, options) => openBrats(dir, options as BratsOptions),
};

/** Opens the dataset `name` in `dir`, or throws naming the datasets available. */
export async function openDataset(name: DatasetName, dir: string, options: Record<string, unknown> = {}): Promise<TargetDataset> {
  const opener = OPENERS[name];
  if (!opener) {
    throw new Error(`Unknown dataset '${name}'. Available: ${Object.keys(OPENERS).join(', ')}.`);
  }
  return opener(dir, options);
}
