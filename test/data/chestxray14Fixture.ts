// Builds small ChestX-ray14 folders in a temporary directory from the shared 621-image sample,
// so tests can change layouts, drop or corrupt images without touching the shared copy.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sharedPath } from '../helpers/shared.ts';

export const SAMPLE_DIR = sharedPath('data', 'chestxray14-sample');

export interface TempDatasetOptions {
  /** Images copied from the sample. */
  images: string[];
  /** 'nih': images/; 'kaggle': images_001/images and images_002/images, split in two halves. */
  layout?: 'nih' | 'kaggle';
  /** Names listed in the split lists and label file but not copied. */
  absent?: string[];
  /** Write the label file in the 2017 form (header and rows end with a comma, ages like 058Y). */
  form2017?: boolean;
}

/** Returns the label file lines (header first) for `names`, in the 2020 form. */
export function sampleLabelLines(names: Set<string>): string[] {
  const lines = fs.readFileSync(path.join(SAMPLE_DIR, 'Data_Entry_2017_v2020.csv'), 'utf8').split('\n');
  return [lines[0], ...lines.slice(1).filter((line) => names.has(line.slice(0, line.indexOf(','))))];
}

/** Rewrites 2020-form lines in the 2017 form: trailing empty column and ages as three digits plus 'Y'. */
export function toForm2017(lines: string[]): string[] {
  return lines.map((line, i) => {
    if (i === 0) return `${line},`;
    const fields = line.split(',');
    fields[4] = `${fields[4].padStart(3, '0')}Y`;
    return `${fields.join(',')},`;
  });
}

/** Creates a dataset folder and returns its path. */
export function makeTempDataset(options: TempDatasetOptions): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-cxr14-'));
  const listed = [...options.images, ...(options.absent ?? [])];

  options.images.forEach((name, i) => {
    const folder =
      options.layout === 'kaggle'
        ? path.join(dir, i < options.images.length / 2 ? 'images_001' : 'images_002', 'images')
        : path.join(dir, 'images');
    fs.mkdirSync(folder, { recursive: true });
    fs.copyFileSync(path.join(SAMPLE_DIR, 'images', name), path.join(folder, name));
  });

  const lines = sampleLabelLines(new Set(listed));
  const labelName = options.form2017 ? 'Data_Entry_2017.csv' : 'Data_Entry_2017_v2020.csv';
  fs.writeFileSync(path.join(dir, labelName), (options.form2017 ? toForm2017(lines) : lines).join('\n') + '\n');

  const test = new Set(fs.readFileSync(path.join(SAMPLE_DIR, 'test_list.txt'), 'utf8').split('\n'));
  fs.writeFileSync(path.join(dir, 'train_val_list.txt'), listed.filter((n) => !test.has(n)).join('\n') + '\n');
  fs.writeFileSync(path.join(dir, 'test_list.txt'), listed.filter((n) => test.has(n)).join('\n') + '\n');
  return dir;
}

/** Returns the first `count` image names of the sample, sorted. */
export function sampleImages(count: number): string[] {
  return fs.readdirSync(path.join(SAMPLE_DIR, 'images')).sort().slice(0, count);
}
