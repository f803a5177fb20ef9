import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { DEFAULT_PREPROCESS } from '../../lib/clip/preprocess.ts';
import { BratsDataset, classifyCaseFiles, displaySlice, openBrats } from '../../lib/data/brats.ts';
import { SPLITS, type Sample } from '../../lib/data/dataset.ts';
import { readNifti } from '../../lib/data/nifti.ts';
import { openDataset } from '../../lib/data/registry.ts';
import { loadPrompts } from '../../lib/eval/zeroShot.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

const sharedTest = hasShared('data', 'brats-sample') ? test : test.skip;
const BRATS_DIR = sharedPath('data', 'brats-sample');
const TEST_CASE = path.join(BRATS_DIR, 'test', 'brats_2013_pat0001_1');

// Opening the sample decodes two volumes per case, so tests share one instance per option set.
const opened = new Map<string, Promise<BratsDataset>>();
function sample(options: Record<string, unknown> = {}): Promise<BratsDataset> {
  const key = JSON.stringify(options);
  if (!opened.has(key)) opened.set(key, openDataset('brats', BRATS_DIR, options) as Promise<BratsDataset>);
  return opened.get(key)!;
}

function allSamples(dataset: BratsDataset): Sample[] {
  return SPLITS.flatMap((split) => dataset.samples(split));
}

function sliceIndex(sample: Sample): number {
  return Number(sample.id.split('/')[1].slice(1));
}

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-brats-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Copies the test case into `dir`/<case> with the FLAIR, T1c, label and brain mask volumes. */
function copyCase(dir: string): string {
  const target = path.join(dir, path.basename(TEST_CASE));
  fs.mkdirSync(target);
  for (const name of fs.readdirSync(TEST_CASE)) fs.copyFileSync(path.join(TEST_CASE, name), path.join(target, name));
  return target;
}

sharedTest('brats cases never share splits', async (t) => {
  const dataset = await sample();
  const splitOfCase = new Map<string, string>();
  for (const s of allSamples(dataset)) {
    const previous = splitOfCase.get(s.patient);
    t.true(previous === undefined || previous === s.split, `case ${s.patient} in ${previous} and ${s.split}`);
    splitOfCase.set(s.patient, s.split);
  }
  t.is(splitOfCase.size, 4);
});

sharedTest('brats split follows folders', async (t) => {
  const dataset = await sample();
  const casesOf = (split: 'train' | 'val' | 'test') => [...new Set(dataset.samples(split).map((s) => s.patient))].sort();
  t.deepEqual(casesOf('train'), ['brats_2013_pat0005_1', 'brats_2013_pat0006_1']);
  t.deepEqual(casesOf('val'), ['brats_2013_pat0003_1']);
  t.deepEqual(casesOf('test'), ['brats_2013_pat0001_1']);
});

sharedTest('brats slice labels follow tumour area', async (t) => {
  const dataset = await sample();
  const label = readNifti(path.join(TEST_CASE, 'OTMultiClass.nii.gz'));
  const mask = readNifti(path.join(TEST_CASE, 'brainmask.nii.gz'));
  const [nx, ny, nz] = label.dims;
  const expectedPositive: number[] = [];
  const expectedNegative: number[] = [];
  for (let k = 0; k < nz; k++) {
    let tumour = 0;
    let brain = 0;
    for (let p = k * nx * ny; p < (k + 1) * nx * ny; p++) {
      if (label.data[p] > 0) tumour++;
      if (mask.data[p] > 0) brain++;
    }
    if (tumour >= 100) expectedPositive.push(k);
    else if (tumour === 0 && brain >= 4000) expectedNegative.push(k);
  }
  const test = dataset.samples('test');
  t.deepEqual(test.filter((s) => s.labels[0] === 1).map(sliceIndex), expectedPositive);
  t.deepEqual(test.filter((s) => s.labels[0] === 0).map(sliceIndex), expectedNegative);
  t.true(expectedPositive.length > 10);
  t.true(expectedNegative.length > 10);
});

sharedTest('brats area threshold is configurable', (t) => {
  const dir = tempDir(t);
  fs.symlinkSync(TEST_CASE, path.join(dir, path.basename(TEST_CASE)));
  const splits = { brats_2013_pat0001_1: 'test' } as const;
  const strict = openBrats(dir, { splits, positiveMinAreaMm2: 1000 });
  const loose = openBrats(dir, { splits });
  const positives = (d: BratsDataset) => d.samples('test').filter((s) => s.labels[0] === 1).length;
  t.true(positives(strict) < positives(loose), `${positives(strict)} vs ${positives(loose)}`);
  t.true(positives(strict) > 0);
});

sharedTest('brats subregions are multi-label', async (t) => {
  const dataset = await sample({ findings: 'subregions', modalities: 'separate', sliceStride: 5 });
  t.deepEqual(dataset.findings, ['Tumour', 'Necrosis', 'Edema', 'Non_Enhancing_Tumour', 'Enhancing_Tumour']);
  const samples = allSamples(dataset);
  for (const s of samples) {
    const anySubregion = s.labels.slice(1).some((v) => v === 1);
    t.true(!anySubregion || s.labels[0] === 1, s.id);
  }
  t.true(samples.some((s) => s.labels[4] === 1));
  t.true(samples.some((s) => s.labels[0] === 1 && s.labels[1] === 0));
});

sharedTest('brats separate modalities pair up', async (t) => {
  const dataset = await sample({ findings: 'subregions', modalities: 'separate', sliceStride: 5 });
  const ids = new Set(allSamples(dataset).map((s) => s.id));
  for (const s of allSamples(dataset).filter((x) => x.id.endsWith('/flair'))) {
    t.true(ids.has(s.id.replace(/\/flair$/, '/t1c')), s.id);
  }
  const image = dataset.renderSample(dataset.samples('val')[0]);
  t.is(image.channels, 1);
});

sharedTest('brats stack renders RGB slice', async (t) => {
  const dataset = await sample();
  const positive = dataset.samples('test').find((s) => s.labels[0] === 1)!;
  const image = dataset.renderSample(positive);
  t.is(image.channels, 3);
  t.is(image.width, 240);
  t.is(image.height, 240);
  t.is(image.data[0], 0); // The corner is outside the brain.
  let max = 0;
  for (const v of image.data) max = Math.max(max, v);
  t.is(max, 255);
});

sharedTest('brats loads CLIP pixels', async (t) => {
  const dataset = await sample();
  const pixels = await dataset.loadPixels(dataset.samples('test')[0], DEFAULT_PREPROCESS);
  t.is(pixels!.length, 3 * 224 * 224);
  t.true(pixels!.every(Number.isFinite));
});

sharedTest('brats prompts cover findings', async (t) => {
  const dataset = await sample({ findings: 'subregions', modalities: 'separate', sliceStride: 5 });
  const prompts = loadPrompts(dataset.promptsFile, dataset.findings);
  t.is(prompts.findings.Tumour, 'tumour');
  t.is(Object.keys(prompts.findings).length, 5);
});

sharedTest('brats seeded split without folders', (t) => {
  const dir = tempDir(t);
  for (const split of ['train', 'validation', 'test']) {
    for (const name of fs.readdirSync(path.join(BRATS_DIR, split))) fs.symlinkSync(path.join(BRATS_DIR, split, name), path.join(dir, name));
  }
  const dataset = openBrats(dir, { sliceStride: 20, splitSeed: 1 });
  const counts = SPLITS.map((split) => new Set(dataset.samples(split).map((s) => s.patient)).size);
  t.deepEqual(counts, [2, 1, 1]);
});

sharedTest('brats corrupt FLAIR skipped and counted', async (t) => {
  const dir = tempDir(t);
  const caseDir = copyCase(dir);
  const dataset = openBrats(dir, { splits: { brats_2013_pat0001_1: 'test' }, sliceStride: 20 });
  const flair = path.join(caseDir, 'Flair_subtrMeanDivStd.nii.gz');
  fs.truncateSync(flair, fs.statSync(flair).size >> 1);
  const pixels = await dataset.loadPixels(dataset.samples('test')[0], DEFAULT_PREPROCESS);
  t.is(pixels, null);
  t.deepEqual(dataset.skipped(), { missing: 0, corrupt: 1 });
});

sharedTest('brats corrupt labels rejected at open', (t) => {
  const dir = tempDir(t);
  const caseDir = copyCase(dir);
  const label = path.join(caseDir, 'OTMultiClass.nii.gz');
  fs.writeFileSync(label, zlib.gzipSync(Buffer.from('not a NIfTI header')));
  const error = t.throws(() => openBrats(dir, { sliceStride: 20 }));
  t.regex(error!.message, /OTMultiClass\.nii\.gz/);
  t.regex(error!.message, /not a NIfTI/);
});

sharedTest('brats case without T1c skipped', (t) => {
  const dir = tempDir(t);
  const caseDir = copyCase(dir);
  const second = path.join(dir, 'incomplete_case');
  fs.mkdirSync(second);
  fs.renameSync(path.join(caseDir, 'T1c_subtrMeanDivStd.nii.gz'), path.join(second, 'Flair.nii.gz'));
  fs.copyFileSync(path.join(TEST_CASE, 'T1c_subtrMeanDivStd.nii.gz'), path.join(caseDir, 'T1c_subtrMeanDivStd.nii.gz'));
  const dataset = openBrats(dir, { sliceStride: 20 });
  t.deepEqual(dataset.skipped(), { missing: 1, corrupt: 0 });
  t.true(allSamples(dataset).every((s) => s.patient === 'brats_2013_pat0001_1'));
});

test('brats misspelt option rejected', (t) => {
  const error = t.throws(() => openBrats('/nonexistent', { positiveMinArea: 50 } as never));
  t.regex(error!.message, /Unknown BraTS option\(s\) positiveMinArea/);
});

test('brats case file names classified', (t) => {
  const brats2021 = classifyCaseFiles(['BraTS2021_00000_flair.nii.gz', 'BraTS2021_00000_seg.nii.gz', 'BraTS2021_00000_t1.nii.gz', 'BraTS2021_00000_t1ce.nii.gz', 'BraTS2021_00000_t2.nii.gz']);
  t.deepEqual(brats2021, { flair: 'BraTS2021_00000_flair.nii.gz', t1c: 'BraTS2021_00000_t1ce.nii.gz', label: 'BraTS2021_00000_seg.nii.gz', brainMask: undefined });
  const deepmedic = classifyCaseFiles(['Flair_subtrMeanDivStd.nii.gz', 'OTMultiClass.nii.gz', 'T1c_subtrMeanDivStd.nii.gz', 'brainmask.nii.gz']);
  t.deepEqual(deepmedic, { flair: 'Flair_subtrMeanDivStd.nii.gz', t1c: 'T1c_subtrMeanDivStd.nii.gz', label: 'OTMultiClass.nii.gz', brainMask: 'brainmask.nii.gz' });
});

test('brats display slice is radiological', (t) => {
  // 3x2 slice, x fastest. In RAS, i grows toward the right and j toward anterior.
  const slice = Uint8Array.from([1, 2, 3, 4, 5, 6]);
  const ras = displaySlice(slice, 3, 2, 'RAS');
  t.deepEqual(Array.from(ras.data), [6, 5, 4, 3, 2, 1]);
  const lps = displaySlice(slice, 3, 2, 'LPS');
  t.deepEqual(Array.from(lps.data), [1, 2, 3, 4, 5, 6]);
  const transposed = displaySlice(slice, 3, 2, 'PLS');
  t.is(transposed.width, 2);
  t.deepEqual(Array.from(transposed.data), [1, 4, 2, 5, 3, 6]);
});
