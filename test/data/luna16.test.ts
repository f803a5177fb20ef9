import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_PREPROCESS } from '../../lib/clip/preprocess.ts';
import { assignSplits, DEFAULT_SPLIT_FRACTIONS } from '../../lib/data/caseSplits.ts';
import { SPLITS, type Sample } from '../../lib/data/dataset.ts';
import { findDicomFiles } from '../../lib/data/dicom.ts';
import { openLuna16 } from '../../lib/data/luna16.ts';
import { BONE_WINDOW, LUNG_WINDOW, MEDIASTINAL_WINDOW } from '../../lib/data/window.ts';
import { openDataset } from '../../lib/data/registry.ts';
import { loadPrompts } from '../../lib/eval/zeroShot.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

const sharedTest = hasShared('data', 'luna16-sample') ? test : test.skip;
const LUNA_DIR = sharedPath('data', 'luna16-sample');
const SERIES_0001 = '1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192';
const SERIES_0002 = '1.3.6.1.4.1.14519.5.2.1.6279.6001.619372068417051974713149104919';
const SERIES_0003 = '1.3.6.1.4.1.14519.5.2.1.6279.6001.170706757615202213033480003264';

// 8-bit value of -320 HU in the lung window (center -600, width 1500): lung is darker.
const LUNG_MAX_PIXEL = Math.round(((-320 + 1350) / 1500) * 255);
// 8-bit value of -100 HU: soft tissue and nodules are brighter.
const TISSUE_MIN_PIXEL = Math.round(((-100 + 1350) / 1500) * 255);

function allSamples(dataset: { samples(split: 'train' | 'val' | 'test'): Sample[] }): Sample[] {
  return SPLITS.flatMap((split) => dataset.samples(split));
}

function scanOf(sample: Sample): string {
  return sample.id.split('/')[0];
}

function centreMean(image: { data: ArrayLike<number>; width: number; height: number }, radius: number): number {
  const cx = Math.floor(image.width / 2);
  const cy = Math.floor(image.height / 2);
  let sum = 0;
  let count = 0;
  for (let y = cy - radius; y <= cy + radius; y++) {
    for (let x = cx - radius; x <= cx + radius; x++) {
      sum += image.data[y * image.width + x];
      count++;
    }
  }
  return sum / count;
}

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-luna-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Copies the .mhd/.raw scan and the annotations into a temporary LUNA16 folder. */
function copyMhdDataset(dir: string): string {
  for (const ext of ['mhd', 'raw']) {
    fs.copyFileSync(path.join(LUNA_DIR, 'luna16_format_derived', `${SERIES_0001}.${ext}`), path.join(dir, `${SERIES_0001}.${ext}`));
  }
  fs.copyFileSync(path.join(LUNA_DIR, 'luna16_csv', 'annotations.csv'), path.join(dir, 'annotations.csv'));
  return path.join(dir, `${SERIES_0001}.raw`);
}

sharedTest('luna16 scans never share splits', async (t) => {
  const dataset = await openDataset('luna16', LUNA_DIR);
  const splitOfScan = new Map<string, string>();
  for (const sample of allSamples(dataset)) {
    const previous = splitOfScan.get(scanOf(sample));
    t.true(previous === undefined || previous === sample.split, `scan ${scanOf(sample)} in ${previous} and ${sample.split}`);
    splitOfScan.set(scanOf(sample), sample.split);
  }
  t.is(splitOfScan.size, 3);
  t.deepEqual([...splitOfScan.values()].sort(), ['test', 'train', 'val']);
});

sharedTest('luna16 split is deterministic', (t) => {
  const first = allSamples(openLuna16(LUNA_DIR, { splitSeed: 3 })).map((s) => `${s.id}:${s.split}`);
  const second = allSamples(openLuna16(LUNA_DIR, { splitSeed: 3 })).map((s) => `${s.id}:${s.split}`);
  t.deepEqual(first, second);
});

sharedTest('luna16 split follows given map', (t) => {
  const dataset = openLuna16(LUNA_DIR, { splits: { [SERIES_0001]: 'test', 'LIDC-IDRI-0002': 'train', [SERIES_0003]: 'val' } });
  t.true(dataset.samples('test').every((s) => scanOf(s) === SERIES_0001));
  t.true(dataset.samples('train').every((s) => scanOf(s) === SERIES_0002));
  t.true(dataset.samples('val').every((s) => scanOf(s) === SERIES_0003));
  t.true(dataset.samples('test').length > 0);
});

sharedTest('luna16 split follows split file', (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'splits.csv');
  fs.writeFileSync(file, `scan,split\nLIDC-IDRI-0001,validation\nLIDC-IDRI-0002,test\n${SERIES_0003},train\n`);
  const dataset = openLuna16(LUNA_DIR, { splitFile: file });
  t.true(dataset.samples('val').every((s) => s.patient === 'LIDC-IDRI-0001'));
  t.true(dataset.samples('test').every((s) => s.patient === 'LIDC-IDRI-0002'));
  t.true(dataset.samples('train').every((s) => s.patient === 'LIDC-IDRI-0003'));
  t.true(dataset.samples('val').length > 0);
});

sharedTest('luna16 split map must cover scans', (t) => {
  const error = t.throws(() => openLuna16(LUNA_DIR, { splits: { [SERIES_0001]: 'test' } }));
  t.regex(error!.message, /has no split/);
});

sharedTest('luna16 patient of DICOM scans', (t) => {
  const dataset = openLuna16(LUNA_DIR);
  const patients = new Set(allSamples(dataset).map((s) => s.patient));
  t.deepEqual([...patients].sort(), ['LIDC-IDRI-0001', 'LIDC-IDRI-0002', 'LIDC-IDRI-0003']);
});

sharedTest('luna16 nodule patches centre nodule', (t) => {
  const dataset = openLuna16(LUNA_DIR);
  const positives = allSamples(dataset).filter((s) => s.labels[0] === 1);
  // 0001: nodule at slice 6.65, radius 11.7 mm, 2.5 mm slices: k 5-8. 0003: slice 5.42, radius 10.7 mm: k 4-7.
  t.deepEqual(positives.map((s) => s.id.split('/')[1]).sort(), ['k4', 'k5', 'k5', 'k6', 'k6', 'k7', 'k7', 'k8']);
  for (const sample of positives) {
    const image = dataset.renderSample(sample);
    t.is(image.channels, 1);
    t.true(centreMean(image, 2) > TISSUE_MIN_PIXEL, `${sample.id} centre ${centreMean(image, 2)}`);
  }
});

sharedTest('luna16 negative patches centre lung', (t) => {
  const dataset = openLuna16(LUNA_DIR);
  const negatives = allSamples(dataset).filter((s) => s.labels[0] === 0);
  t.is(negatives.length, 30);
  for (const sample of negatives.slice(0, 12)) {
    const image = dataset.renderSample(sample);
    const centre = image.data[Math.floor(image.height / 2) * image.width + Math.floor(image.width / 2)];
    t.true(centre <= LUNG_MAX_PIXEL, `${sample.id} centre ${centre}`);
  }
});

sharedTest('luna16 negative patches repeat', (t) => {
  const sample = allSamples(openLuna16(LUNA_DIR)).find((s) => s.labels[0] === 0)!;
  const first = openLuna16(LUNA_DIR).renderSample(sample);
  const second = openLuna16(LUNA_DIR).renderSample(sample);
  t.deepEqual(Buffer.from(first.data.buffer), Buffer.from(second.data.buffer));
});

sharedTest('luna16 slice mode labels', (t) => {
  const dataset = openLuna16(LUNA_DIR, { mode: 'slice' });
  const scan0001 = allSamples(dataset).filter((s) => scanOf(s) === SERIES_0001);
  const positive = scan0001.filter((s) => s.labels[0] === 1).map((s) => s.id.split('/')[1]);
  const negative = scan0001.filter((s) => s.labels[0] === 0).map((s) => s.id.split('/')[1]);
  t.deepEqual(positive, ['k5', 'k6', 'k7', 'k8']);
  // Negatives are more than radius + 5 mm from the nodule centre: |k - 6.65| * 2.5 > 16.7.
  t.deepEqual(negative, ['k14', 'k15']);
  const image = dataset.renderSample(scan0001[0]);
  t.is(image.width, 512);
  t.is(image.height, 512);
});

sharedTest('luna16 loads CLIP pixels', async (t) => {
  const dataset = openLuna16(LUNA_DIR);
  const pixels = await dataset.loadPixels(dataset.samples('test')[0], DEFAULT_PREPROCESS);
  t.is(pixels!.length, 3 * 224 * 224);
  t.true(pixels!.every(Number.isFinite));
});

sharedTest('luna16 limit keeps positives', (t) => {
  const dataset = openLuna16(LUNA_DIR, { limit: 5 });
  for (const split of SPLITS) t.true(dataset.samples(split).length <= 5, split);
  t.true(dataset.samples('test').some((s) => s.labels[0] === 1));
});

sharedTest('luna16 prompts cover findings', (t) => {
  const dataset = openLuna16(LUNA_DIR);
  const prompts = loadPrompts(dataset.promptsFile, dataset.findings);
  t.is(prompts.findings.Nodule, 'lung nodule');
  t.true(prompts.positiveTemplates.map((template) => template.replace('{finding}', 'lung nodule')).includes('a CT slice showing a lung nodule.'));
});

sharedTest('luna16 corrupt raw skipped and counted', async (t) => {
  const dir = tempDir(t);
  const raw = copyMhdDataset(dir);
  const dataset = openLuna16(dir, { splits: { [SERIES_0001]: 'test' } });
  fs.truncateSync(raw, 1000);
  const pixels = await dataset.loadPixels(dataset.samples('test')[0], DEFAULT_PREPROCESS);
  t.is(pixels, null);
  t.deepEqual(dataset.skipped(), { missing: 0, corrupt: 1 });
});

sharedTest('luna16 truncated raw rejected at open', (t) => {
  const dir = tempDir(t);
  const raw = copyMhdDataset(dir);
  fs.truncateSync(raw, 1000);
  const error = t.throws(() => openLuna16(dir));
  t.regex(error!.message, new RegExp(`${SERIES_0001}\\.raw`));
  t.regex(error!.message, /truncated/);
});

sharedTest('luna16 malformed annotation row named', (t) => {
  const dir = tempDir(t);
  copyMhdDataset(dir);
  fs.appendFileSync(path.join(dir, 'annotations.csv'), `${SERIES_0001},12.5,abc,-100,5\n`);
  const error = t.throws(() => openLuna16(dir));
  t.regex(error!.message, /annotations\.csv/);
  t.regex(error!.message, /Invalid row 1188/);
});

/** Links the three DICOM series of the sample into `dir` and copies the annotation files there. */
function linkDicomDataset(dir: string): void {
  for (const patient of fs.readdirSync(path.join(LUNA_DIR, 'dicom_slabs'))) {
    fs.symlinkSync(path.join(LUNA_DIR, 'dicom_slabs', patient), path.join(dir, patient));
  }
  fs.copyFileSync(path.join(LUNA_DIR, 'luna16_csv', 'annotations.csv'), path.join(dir, 'annotations.csv'));
}

sharedTest('luna16 scan list filters series', (t) => {
  const dir = tempDir(t);
  linkDicomDataset(dir);
  fs.writeFileSync(path.join(dir, 'seriesuids.csv'), `${SERIES_0001}\n${SERIES_0003}\n`);
  const dataset = openLuna16(dir);
  const scans = new Set(allSamples(dataset).map(scanOf));
  t.deepEqual([...scans].sort(), [SERIES_0003, SERIES_0001].sort());
});

sharedTest('luna16 unreadable DICOM skipped', (t) => {
  const dir = tempDir(t);
  linkDicomDataset(dir);
  fs.mkdirSync(path.join(dir, 'broken'));
  const bytes = fs.readFileSync(findDicomFiles(path.join(LUNA_DIR, 'dicom_slabs'))[0]);
  fs.writeFileSync(path.join(dir, 'broken', 'cut.dcm'), bytes.subarray(0, 300));
  const dataset = openLuna16(dir);
  t.deepEqual(dataset.skipped(), { missing: 0, corrupt: 1 });
  t.is(new Set(allSamples(dataset).map(scanOf)).size, 3);
});

sharedTest('luna16 lung masks are not scans', (t) => {
  const dir = tempDir(t);
  copyMhdDataset(dir);
  const masks = path.join(dir, 'seg-lungs-LUNA16');
  fs.mkdirSync(masks);
  fs.writeFileSync(path.join(masks, `${SERIES_0001}.mhd`), 'NDims = 3\nElementDataFile = missing.raw\n');
  const dataset = openLuna16(dir, { splits: { [SERIES_0001]: 'test' } });
  t.true(dataset.samples('test').length > 0);
});

sharedTest('luna16 duplicate scan files rejected', (t) => {
  const dir = tempDir(t);
  copyMhdDataset(dir);
  fs.mkdirSync(path.join(dir, 'copy'));
  for (const ext of ['mhd', 'raw']) fs.copyFileSync(path.join(dir, `${SERIES_0001}.${ext}`), path.join(dir, 'copy', `${SERIES_0001}.${ext}`));
  const error = t.throws(() => openLuna16(dir));
  t.regex(error!.message, /Two \.mhd files/);
});

sharedTest('luna16 small nodule keeps nearest slice', (t) => {
  const dir = tempDir(t);
  copyMhdDataset(dir);
  // A 4 mm nodule 1 mm above slice 2 (z = -132.5 + 2 * 2.5 = -127.5): 1 mm exceeds half its radius.
  fs.appendFileSync(path.join(dir, 'annotations.csv'), `${SERIES_0001},-100,-100,-126.5,4\n`);
  const dataset = openLuna16(dir, { splits: { [SERIES_0001]: 'test' } });
  const small = dataset.samples('test').filter((s) => s.id.endsWith('/nodule1'));
  t.deepEqual(small.map((s) => s.id.split('/')[1]), ['k2']);
});

sharedTest('luna16 RGB windows render colour', (t) => {
  const dataset = openLuna16(LUNA_DIR, { rgbWindows: [LUNG_WINDOW, MEDIASTINAL_WINDOW, BONE_WINDOW] });
  const positive = allSamples(dataset).find((s) => s.labels[0] === 1)!;
  const image = dataset.renderSample(positive);
  t.is(image.channels, 3);
  t.is(image.data.length, image.width * image.height * 3);
  // Lung (about -850 HU) is dark grey in the lung window and black in the other two.
  let lungPixels = 0;
  for (let p = 0; p < image.width * image.height; p++) {
    if (image.data[3 * p] > 20 && image.data[3 * p] < 100 && image.data[3 * p + 1] === 0 && image.data[3 * p + 2] === 0) lungPixels++;
  }
  t.true(lungPixels > 100, `lung pixels ${lungPixels}`);
});

test('luna16 misspelt option rejected', (t) => {
  const error = t.throws(() => openLuna16('/nonexistent', { patchSizeMm: 32 } as never));
  t.regex(error!.message, /Unknown LUNA16 option\(s\) patchSizeMm/);
});

test('luna16 missing annotations named', (t) => {
  const dir = tempDir(t);
  fs.writeFileSync(path.join(dir, 'scan.mhd'), 'NDims = 3\nElementDataFile = scan.raw\n');
  const error = t.throws(() => openLuna16(dir));
  t.regex(error!.message, /No annotations\.csv/);
  t.regex(error!.message, /--dataset-options '\{"annotationsCsv": "FILE"\}'/);
});

test('luna16 absent folder named', (t) => {
  const error = t.throws(() => openLuna16('/nonexistent-luna16'));
  t.regex(error!.message, /LUNA16 folder not found: \/nonexistent-luna16/);
});

test('split assignment spreads positive scans', (t) => {
  const assigned = assignSplits(['a', 'b', 'c'], new Set(['a', 'b']), DEFAULT_SPLIT_FRACTIONS, 0);
  t.deepEqual([...assigned.values()].sort(), ['test', 'train', 'val']);
  t.not(assigned.get('c'), 'test');
  t.not(assigned.get('c'), 'train');
});

test('split assignment follows fractions', (t) => {
  const ids = Array.from({ length: 100 }, (_, i) => `scan${i}`);
  const assigned = assignSplits(ids, new Set(ids.slice(0, 30)), { train: 0.7, val: 0.1, test: 0.2 }, 1);
  const counts = { train: 0, val: 0, test: 0 };
  for (const split of assigned.values()) counts[split]++;
  t.deepEqual(counts, { train: 70, val: 10, test: 20 });
  const positiveTest = ids.slice(0, 30).filter((id) => assigned.get(id) === 'test').length;
  t.is(positiveTest, 6);
});
