import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findDicomFiles, groupDicomSeries, readDicomHeader, readDicomSeries, readDicomSliceHu } from '../../lib/data/dicom.ts';
import { readMetaImage } from '../../lib/data/metaimage.ts';
import { VolumeFormatError, worldToVoxel } from '../../lib/data/volume.ts';
import { createRng, randomInt } from '../../lib/util/rng.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

const sharedTest = hasShared('data', 'luna16-sample') ? test : test.skip;
const SERIES_0001 = '1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192';
const SERIES_0003 = '1.3.6.1.4.1.14519.5.2.1.6279.6001.170706757615202213033480003264';
const DICOM_DIR = sharedPath('data', 'luna16-sample', 'dicom_slabs');

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-dcm-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

sharedTest('dicom series grouped and ordered', (t) => {
  const series = groupDicomSeries(findDicomFiles(DICOM_DIR));
  const byPatient = Object.fromEntries(series.map((s) => [s.patientId, s]));
  t.deepEqual(Object.keys(byPatient).sort(), ['LIDC-IDRI-0001', 'LIDC-IDRI-0002', 'LIDC-IDRI-0003']);
  t.is(byPatient['LIDC-IDRI-0001'].dims[2], 16);
  t.is(byPatient['LIDC-IDRI-0002'].dims[2], 12);
  t.is(byPatient['LIDC-IDRI-0003'].dims[2], 11);
  t.is(byPatient['LIDC-IDRI-0001'].spacing[2], 2.5);
  t.is(byPatient['LIDC-IDRI-0002'].spacing[2], 1.25);
  for (const s of series) {
    t.true(s.positions.every((z, k) => k === 0 || z > s.positions[k - 1]), `${s.patientId} positions ascend`);
  }
});

sharedTest('dicom slab equals metaimage slab', (t) => {
  const series = groupDicomSeries(findDicomFiles(DICOM_DIR)).find((s) => s.seriesUid === SERIES_0001)!;
  const dicom = readDicomSeries(series);
  const mhd = readMetaImage(sharedPath('data', 'luna16-sample', 'luna16_format_derived', `${SERIES_0001}.mhd`));
  t.deepEqual(dicom.dims, mhd.dims);
  t.deepEqual(dicom.origin, mhd.origin);
  let mismatches = 0;
  for (let v = 0; v < dicom.data.length; v++) if (dicom.data[v] !== mhd.data[v]) mismatches++;
  t.is(mismatches, 0);
});

sharedTest('dicom rescale gives Hounsfield units', (t) => {
  const file = findDicomFiles(DICOM_DIR)[0];
  const { header, hu } = readDicomSliceHu(file);
  t.is(header.slope, 1);
  t.is(header.intercept, -1024);
  let min = Infinity;
  for (const v of hu) min = Math.min(min, v);
  // Air outside the body reads about -1000 HU, and the padding outside the scan circle -2000 or lower.
  t.true(min <= -1000, `min HU ${min}`);
});

sharedTest('dicom nodule of LIDC-IDRI-0003 maps to slab', (t) => {
  const series = groupDicomSeries(findDicomFiles(DICOM_DIR)).find((s) => s.seriesUid === SERIES_0003)!;
  const volume = readDicomSeries(series);
  // Expected from the nodule table of the sample: col 367.04, row 349.75, slice 5.42.
  const [i, j, k] = worldToVoxel(volume, [72.28670656, 76.90023946, -190.4589276]);
  t.true(Math.abs(i - 367.04) < 0.02, `column ${i}`);
  t.true(Math.abs(j - 349.75) < 0.02, `row ${j}`);
  t.true(Math.abs(k - 5.42) < 0.01, `slice ${k}`);
  const [nx, ny] = volume.dims;
  let sum = 0;
  let count = 0;
  for (let dj = -3; dj <= 3; dj++) for (let di = -3; di <= 3; di++) {
    sum += volume.data[Math.round(i) + di + nx * (Math.round(j) + dj + ny * Math.round(k))];
    count++;
  }
  t.true(sum / count > 0, `mean core HU ${sum / count}`);
});

sharedTest('dicom order ignores file names', (t) => {
  const dir = tempDir(t);
  const source = findDicomFiles(DICOM_DIR).filter((f) => f.includes(SERIES_0001));
  // Name the copies in reverse order of position so that name order is wrong.
  source.forEach((file) => {
    const z = Number(path.basename(file, '.dcm'));
    fs.copyFileSync(file, path.join(dir, `${String(1000 + z * 10).padStart(6, '0')}.dcm`));
  });
  const [series] = groupDicomSeries(findDicomFiles(dir));
  t.deepEqual(series.positions, [...series.positions].sort((a, b) => a - b));
  t.is(series.positions[0], -132.5);
});

sharedTest('dicom truncated file names file', (t) => {
  const dir = tempDir(t);
  const bytes = fs.readFileSync(findDicomFiles(DICOM_DIR)[0]);
  const file = path.join(dir, 'cut.dcm');
  fs.writeFileSync(file, bytes.subarray(0, bytes.length - 1000));
  const error = t.throws(() => readDicomSliceHu(file));
  t.regex(error!.message, /cut\.dcm/);
  t.regex(error!.message, /truncated/i);
});

test('dicom garbage file names file', (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'noise.dcm');
  fs.writeFileSync(file, Buffer.from('this is not a DICOM file at all'));
  const error = t.throws(() => readDicomHeader(file));
  t.regex(error!.message, /noise\.dcm/);
  t.regex(error!.message, /not a readable DICOM/);
});

sharedTest('dicom duplicate slice rejected', (t) => {
  const dir = tempDir(t);
  const file = findDicomFiles(DICOM_DIR)[0];
  fs.copyFileSync(file, path.join(dir, 'a.dcm'));
  fs.copyFileSync(file, path.join(dir, 'b.dcm'));
  const error = t.throws(() => groupDicomSeries(findDicomFiles(dir)));
  t.regex(error!.message, /duplicate slice position/);
});

sharedTest('dicom random header damage handled', (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'damaged.dcm');
  const original = fs.readFileSync(findDicomFiles(DICOM_DIR)[0]);
  const rng = createRng(5);
  const unclean: string[] = [];
  let rejected = 0;
  for (let trial = 0; trial < 150; trial++) {
    const bytes = Buffer.from(original);
    // Damage the meta header and data set before the pixel data (which starts near byte 2176).
    for (let flip = 0; flip <= randomInt(rng, 5); flip++) bytes[132 + randomInt(rng, 2000)] = randomInt(rng, 256);
    fs.writeFileSync(file, bytes);

    try {
      readDicomSliceHu(file);
    } catch (error) {
      if (!(error instanceof VolumeFormatError) || !error.message.includes(file)) unclean.push(`trial ${trial}: ${(error as Error).name}: ${(error as Error).message}`);
      else rejected++;
    }
  }
  t.deepEqual(unclean, []);
  t.true(rejected > 20, `rejected ${rejected}`);
});

