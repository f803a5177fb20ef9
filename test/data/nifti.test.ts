import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { readNifti } from '../../lib/data/nifti.ts';
import { VolumeFormatError } from '../../lib/data/volume.ts';
import { createRng, randomInt } from '../../lib/util/rng.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

const sharedTest = hasShared('data', 'brats-sample') ? test : test.skip;
const BRATS_DIR = sharedPath('data', 'brats-sample');

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-nii-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Parses "labels={0: 8816276, 1: 26371, ...}" per "split/case" from the sample's volume statistics. */
function expectedLabelCounts(): Map<string, Map<number, number>> {
  const result = new Map<string, Map<number, number>>();
  let current = '';
  for (const line of fs.readFileSync(path.join(BRATS_DIR, 'volume_stats.txt'), 'utf8').split('\n')) {
    if (/^\S+\/\S+$/.test(line.trim()) && !line.startsWith(' ')) current = line.trim();
    const match = /OTMultiClass:.*labels=\{([^}]*)\}/.exec(line);
    if (match) {
      const counts = new Map(match[1].split(',').map((pair) => pair.split(':').map(Number) as [number, number]));
      result.set(current, counts);
    }
  }
  return result;
}

/** Builds a 2x2x2 int16 NIfTI-1 image with the given scaling and an sform of 2 mm voxels. */
function tinyNifti(values: number[], slope: number, intercept: number): Buffer {
  const header = Buffer.alloc(352);
  header.writeInt32LE(348, 0);
  [3, 2, 2, 2, 1, 1, 1, 1].forEach((d, i) => header.writeInt16LE(d, 40 + 2 * i));
  header.writeInt16LE(4, 70); // datatype int16
  header.writeInt16LE(16, 72); // bitpix
  [1, 2, 2, 2, 0, 0, 0, 0].forEach((d, i) => header.writeFloatLE(d, 76 + 4 * i));
  header.writeFloatLE(352, 108); // vox_offset
  header.writeFloatLE(slope, 112);
  header.writeFloatLE(intercept, 116);
  header.writeInt16LE(0, 252); // qform_code
  header.writeInt16LE(1, 254); // sform_code
  [[-2, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72]].forEach((row, r) => row.forEach((v, c) => header.writeFloatLE(v, 280 + 16 * r + 4 * c)));
  header.write('n+1\0', 344, 'latin1');
  const data = Buffer.alloc(values.length * 2);
  values.forEach((v, i) => data.writeInt16LE(v, 2 * i));
  return Buffer.concat([header, data]);
}

sharedTest('nifti BraTS volumes have expected shape', (t) => {
  const volume = readNifti(path.join(BRATS_DIR, 'train', 'brats_2013_pat0005_1', 'Flair_subtrMeanDivStd.nii.gz'));
  t.deepEqual(volume.dims, [240, 240, 155]);
  t.deepEqual(volume.spacing, [1, 1, 1]);
  t.is(volume.datatype, 'float32');
  t.is(volume.data.length, 240 * 240 * 155);
});

sharedTest('nifti label counts match statistics', (t) => {
  const expected = expectedLabelCounts();
  let checked = 0;
  for (const [caseKey, counts] of expected) {
    const file = path.join(BRATS_DIR, caseKey, 'OTMultiClass.nii.gz');
    if (!fs.existsSync(file)) continue; // The statistics also list cases the sample leaves out.
    const volume = readNifti(file);
    t.deepEqual(volume.dims, [240, 240, 155]);

    // Count per axial slice, then sum over slices.
    const [nx, ny, nz] = volume.dims;
    const summed = new Map<number, number>();
    for (let k = 0; k < nz; k++) {
      const slice = volume.data.subarray(k * nx * ny, (k + 1) * nx * ny);
      for (const v of slice) summed.set(v, (summed.get(v) ?? 0) + 1);
    }
    for (const [label, count] of counts) t.is(summed.get(label) ?? 0, count, `${caseKey} label ${label}`);
    checked++;
  }
  t.is(checked, 4);
});

test('nifti scl_slope and inter applied', (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'tiny.nii');
  fs.writeFileSync(file, tinyNifti([0, 1, 2, 3, 4, 5, 6, -7], 2, -1));
  const volume = readNifti(file);
  t.deepEqual(Array.from(volume.data), [-1, 1, 3, 5, 7, 9, 11, -15]);
  t.true(volume.data instanceof Float32Array);
});

test('nifti sform gives geometry', (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'tiny.nii.gz');
  fs.writeFileSync(file, zlib.gzipSync(tinyNifti([0, 1, 2, 3, 4, 5, 6, 7], 0, 0)));
  const volume = readNifti(file);
  t.deepEqual(volume.spacing, [2, 2, 2]);
  t.deepEqual(volume.origin, [90, -126, -72]);
  t.is(volume.orientation, 'LAS');
  t.deepEqual(Array.from(volume.data), [0, 1, 2, 3, 4, 5, 6, 7]);
});

test('nifti truncated voxels names file', (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'cut.nii');
  fs.writeFileSync(file, tinyNifti([0, 1, 2, 3, 4, 5, 6, 7], 0, 0).subarray(0, 352 + 10));
  const error = t.throws(() => readNifti(file));
  t.regex(error!.message, /cut\.nii/);
  t.regex(error!.message, /truncated voxel data/);
});

sharedTest('nifti truncated gzip names file', (t) => {
  const dir = tempDir(t);
  const bytes = fs.readFileSync(path.join(BRATS_DIR, 'test', 'brats_2013_pat0001_1', 'OTMultiClass.nii.gz'));
  const file = path.join(dir, 'cut.nii.gz');
  fs.writeFileSync(file, bytes.subarray(0, bytes.length >> 1));
  const error = t.throws(() => readNifti(file));
  t.regex(error!.message, /cut\.nii\.gz/);
  t.regex(error!.message, /gzip/);
});

test('nifti wrong magic rejected', (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'bad.nii');
  const bytes = tinyNifti([0, 1, 2, 3, 4, 5, 6, 7], 0, 0);
  bytes.write('xyz\0', 344, 'latin1');
  fs.writeFileSync(file, bytes);
  const error = t.throws(() => readNifti(file));
  t.regex(error!.message, /bad\.nii/);
  t.regex(error!.message, /not a NIfTI/);
});

test('nifti time series rejected', (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'series.nii');
  const bytes = tinyNifti([0, 1, 2, 3, 4, 5, 6, 7], 0, 0);
  bytes.writeInt16LE(4, 40);
  bytes.writeInt16LE(2, 48);
  fs.writeFileSync(file, bytes);
  const error = t.throws(() => readNifti(file));
  t.regex(error!.message, /only single 3-D volumes/);
});

test('nifti random header damage handled', (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'damaged.nii');
  const rng = createRng(7);
  const unclean: string[] = [];
  let rejected = 0;
  for (let trial = 0; trial < 600; trial++) {
    const bytes = tinyNifti([0, 1, 2, 3, 4, 5, 6, 7], 0, 0);
    for (let flip = 0; flip <= randomInt(rng, 4); flip++) bytes[randomInt(rng, 348)] = randomInt(rng, 256);
    fs.writeFileSync(file, bytes);

    // Either a volume with finite geometry, or a VolumeFormatError naming the file.
    try {
      const volume = readNifti(file);
      const geometry = [...volume.spacing, ...volume.origin, ...volume.direction.flat()];
      if (!geometry.every(Number.isFinite)) unclean.push(`trial ${trial}: non-finite geometry ${geometry}`);
    } catch (error) {
      if (!(error instanceof VolumeFormatError) || !error.message.includes(file)) unclean.push(`trial ${trial}: ${(error as Error).name}: ${(error as Error).message}`);
      else rejected++;
    }
  }
  t.deepEqual(unclean, []);
  t.true(rejected > 50, `rejected ${rejected}`);
});

