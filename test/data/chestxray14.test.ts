import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ChestXray14Dataset } from '../../lib/data/chestxray14.ts';
import { SPLITS, type Sample } from '../../lib/data/dataset.ts';
import { openDataset } from '../../lib/data/registry.ts';
import { assertPatientDisjoint } from '../../lib/data/splits.ts';
import { hasShared, PROJECT_ROOT } from '../helpers/shared.ts';
import { makeTempDataset, SAMPLE_DIR, sampleImages } from './chestxray14Fixture.ts';

const sharedTest = hasShared('data', 'chestxray14-sample') ? test : test.skip;

// Positives per finding over the 621 sample images, as counted by the sample's publisher.
const SAMPLE_POSITIVES: Record<string, number> = {
  Atelectasis: 92,
  Cardiomegaly: 56,
  Effusion: 82,
  Infiltration: 123,
  Mass: 72,
  Nodule: 89,
  Pneumonia: 32,
  Pneumothorax: 44,
  Consolidation: 81,
  Edema: 18,
  Emphysema: 41,
  Fibrosis: 56,
  Pleural_Thickening: 68,
  Hernia: 20,
};

// Pixels are not needed in these tests, so a stand-in decoder returns a constant image.
const noDecode = { cache: false, decode: async () => new Float32Array(3 * 4 * 4) };

function allSamples(dataset: ChestXray14Dataset): Sample[] {
  return SPLITS.flatMap((split) => dataset.samples(split));
}

sharedTest('chestxray14 sample split counts', (t) => {
  const dataset = ChestXray14Dataset.open(SAMPLE_DIR, noDecode);
  const info = dataset.describe();
  t.is(info.imagesFound, 621);
  t.is(dataset.samples('train').length + dataset.samples('val').length, 546);
  t.is(dataset.samples('test').length, 75);
  t.is(info.layout, 'nih');
});

sharedTest('chestxray14 sample positive counts', (t) => {
  const dataset = ChestXray14Dataset.open(SAMPLE_DIR, noDecode);
  const samples = allSamples(dataset);
  dataset.findings.forEach((finding, f) => {
    const positives = samples.reduce((sum, s) => sum + s.labels[f], 0);
    t.is(positives, SAMPLE_POSITIVES[finding], finding);
  });
  t.is(samples.filter((s) => s.labels.every((y) => y === 0)).length, 100, 'No Finding');
});

sharedTest('chestxray14 no patient in two splits', (t) => {
  const dataset = ChestXray14Dataset.open(SAMPLE_DIR, noDecode);
  const patients = SPLITS.map((split) => new Set(dataset.samples(split).map((s) => s.patient)));
  for (let a = 0; a < 3; a++) {
    for (let b = a + 1; b < 3; b++) {
      const shared = [...patients[a]].filter((p) => patients[b].has(p));
      t.deepEqual(shared, [], `${SPLITS[a]} and ${SPLITS[b]}`);
    }
  }
  t.notThrows(() => assertPatientDisjoint(allSamples(dataset)));
});

test('splits reject shared patient', (t) => {
  const samples: Sample[] = [
    { id: 'a.png', patient: '7', split: 'train', labels: [] },
    { id: 'b.png', patient: '7', split: 'test', labels: [] },
  ];
  t.throws(() => assertPatientDisjoint(samples), { message: /Patient 7 is in two splits: a\.png in train and b\.png in test/ });
});

sharedTest('chestxray14 validation split is seeded', (t) => {
  const ids = (seed: number, valFraction = 0.1) =>
    ChestXray14Dataset.open(SAMPLE_DIR, { ...noDecode, splitSeed: seed, valFraction })
      .samples('val')
      .map((s) => s.id);
  t.is(ids(1).length, 55);
  t.deepEqual(ids(1), ids(1));
  t.notDeepEqual(ids(1), ids(2));
  t.is(ids(1, 0.25).length, 137);
});

sharedTest('chestxray14 rejects bad val fraction', (t) => {
  t.throws(() => ChestXray14Dataset.open(SAMPLE_DIR, { ...noDecode, valFraction: 1.5 }), { message: /Invalid validation fraction 1.5/ });
});

sharedTest('chestxray14 stratified sample', (t) => {
  const full = ChestXray14Dataset.open(SAMPLE_DIR, noDecode).samples('train');
  const open = (sampleSeed: number) => ChestXray14Dataset.open(SAMPLE_DIR, { ...noDecode, limit: { train: 40 }, sampleSeed });
  const sample = open(3).samples('train');
  t.is(sample.length, 40);

  for (let f = 0; f < 14; f++) {
    if (full.some((s) => s.labels[f] === 1)) t.true(sample.some((s) => s.labels[f] === 1), `finding ${f} has a positive`);
  }
  t.deepEqual(sample.map((s) => s.id), open(3).samples('train').map((s) => s.id));
  t.notDeepEqual(sample.map((s) => s.id), open(4).samples('train').map((s) => s.id));
  t.is(open(3).samples('test').length, 75, 'splits without a limit keep all images');
});

sharedTest('chestxray14 limit applies to all splits', (t) => {
  const dataset = ChestXray14Dataset.open(SAMPLE_DIR, { ...noDecode, limit: 10 });
  for (const split of SPLITS) t.is(dataset.samples(split).length, 10, split);
});

sharedTest('chestxray14 kaggle layout found', (t) => {
  const images = sampleImages(12);
  const dir = makeTempDataset({ images, layout: 'kaggle' });
  t.true(fs.existsSync(path.join(dir, 'images_002', 'images', images[11])));

  const dataset = ChestXray14Dataset.open(dir, noDecode);
  t.is(dataset.describe().layout, 'kaggle');
  t.is(allSamples(dataset).length, 12);
  t.deepEqual(dataset.skipped(), { missing: 0, corrupt: 0 });
  fs.rmSync(dir, { recursive: true });
});

sharedTest('chestxray14 missing images counted', (t) => {
  const all = sampleImages(10);
  const dir = makeTempDataset({ images: all.slice(0, 7), absent: all.slice(7) });
  const dataset = ChestXray14Dataset.open(dir, noDecode);
  t.is(allSamples(dataset).length, 7);
  t.is(dataset.skipped().missing, 3);
  t.deepEqual(dataset.describe().firstMissing, all.slice(7));
  fs.rmSync(dir, { recursive: true });
});

sharedTest('chestxray14 strictImages rejects missing', (t) => {
  const all = sampleImages(10);
  const dir = makeTempDataset({ images: all.slice(0, 7), absent: all.slice(7) });
  t.throws(() => ChestXray14Dataset.open(dir, { ...noDecode, strictImages: true }), {
    message: new RegExp(`3 of 10 images listed in the split lists are missing .*first: ${all[7].replace('.', '\\.')}`),
  });
  fs.rmSync(dir, { recursive: true });
});

sharedTest('chestxray14 reads 2017 label form', (t) => {
  const images = sampleImages(8);
  const dir = makeTempDataset({ images, form2017: true });
  const dataset2017 = ChestXray14Dataset.open(dir, noDecode);
  t.is(dataset2017.describe().labelForm, '2017');

  const reference = new Map(allSamples(ChestXray14Dataset.open(SAMPLE_DIR, noDecode)).map((s) => [s.id, s.labels]));
  for (const sample of allSamples(dataset2017)) t.deepEqual(sample.labels, reference.get(sample.id), sample.id);
  t.is(allSamples(dataset2017).length, 8);
  fs.rmSync(dir, { recursive: true });
});

sharedTest('chestxray14 truncated image skipped', async (t) => {
  const images = sampleImages(4);
  const dir = makeTempDataset({ images });
  const victim = path.join(dir, 'images', images[1]);
  const bytes = fs.readFileSync(victim);
  fs.writeFileSync(victim, bytes.subarray(0, Math.floor(bytes.length / 3)));

  const dataset = ChestXray14Dataset.open(dir, { cache: false, valFraction: 0 });
  const cfg = { size: 32, mean: [0.5, 0.5, 0.5] as [number, number, number], std: [0.5, 0.5, 0.5] as [number, number, number] };
  const results = await Promise.all(allSamples(dataset).map((s) => dataset.loadPixels(s, cfg)));
  const byId = new Map(allSamples(dataset).map((s, i) => [s.id, results[i]]));

  t.is(byId.get(images[1]), null);
  t.is(byId.get(images[0])?.length, 3 * 32 * 32);
  t.deepEqual(dataset.skipped(), { missing: 0, corrupt: 1 });

  // A second load neither decodes again nor counts twice.
  const sample = allSamples(dataset).find((s) => s.id === images[1])!;
  t.is(await dataset.loadPixels(sample, cfg), null);
  t.is(dataset.skipped().corrupt, 1);
  fs.rmSync(dir, { recursive: true });
});

// 00000100_000.png is one of the RGBA originals in the NIH release, 00000846_000.png a greyscale one.
sharedTest('chestxray14 loads RGBA originals', async (t) => {
  const images = ['00000100_000.png', '00000846_000.png'];
  const dir = makeTempDataset({ images });
  for (const name of images) fs.copyFileSync(path.join(SAMPLE_DIR, 'originals', name), path.join(dir, 'images', name));

  const dataset = ChestXray14Dataset.open(dir, { cache: false, valFraction: 0 });
  const cfg = { size: 32, mean: [0.5, 0.5, 0.5] as [number, number, number], std: [0.5, 0.5, 0.5] as [number, number, number] };
  for (const sample of allSamples(dataset)) {
    const pixels = await dataset.loadPixels(sample, cfg);
    t.is(pixels?.length, 3 * 32 * 32, sample.id);
  }
  t.deepEqual(dataset.skipped(), { missing: 0, corrupt: 0 });
  fs.rmSync(dir, { recursive: true });
});

sharedTest('chestxray14 missing folder error', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-empty-'));
  t.throws(() => ChestXray14Dataset.open(dir, noDecode), { message: /No image folder in .*expected images\// });
  fs.rmSync(dir, { recursive: true });
});

test('chestxray14 absent folder names fix', (t) => {
  const dir = path.join(os.tmpdir(), 'clipfreeze-absent-dataset');
  const error = t.throws(() => ChestXray14Dataset.open(dir, noDecode));
  t.regex(error?.message ?? '', /ChestX-ray14 folder not found: .*clipfreeze-absent-dataset/);
  t.regex(error?.message ?? '', /Pass the folder that contains Data_Entry_2017_v2020\.csv/);
});

test('chestxray14 file path rejected', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-file-'));
  const file = path.join(dir, 'Data_Entry_2017_v2020.csv');
  fs.writeFileSync(file, 'Image Index\n');
  t.throws(() => ChestXray14Dataset.open(file, noDecode), { message: /is a file, not a folder\. Pass the folder/ });
  fs.rmSync(dir, { recursive: true });
});

sharedTest('chestxray14 image folder passed directly', (t) => {
  t.throws(() => ChestXray14Dataset.open(path.join(SAMPLE_DIR, 'images'), noDecode), { message: /contains images itself: pass the folder that contains it/ });
});

sharedTest('registry opens chestxray14', async (t) => {
  const dataset = await openDataset('chestxray14', SAMPLE_DIR, noDecode);
  t.is(dataset.name, 'chestxray14');
  t.is(dataset.findings.length, 14);
  t.true(dataset.promptsFile.endsWith(path.join('eval', 'prompts', 'chestxray14.json')));
});

test('registry rejects unknown dataset', async (t) => {
  await t.throwsAsync(openDataset('mnist' as 'chestxray14', '/nonexistent'), { message: /Unknown dataset 'mnist'/ });
});

/** Opens the sample folder twice in a new process and returns its log on stderr. */
function openTwiceLog(logLevel: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cxr-warn-'));
  const script = path.join(dir, 'open-twice.ts');
  const module = path.join(PROJECT_ROOT, 'lib', 'data', 'chestxray14.ts');
  fs.writeFileSync(
    script,
    `import { ChestXray14Dataset } from ${JSON.stringify(module)};\n` +
      `for (let i = 0; i < 2; i++) ChestXray14Dataset.open(${JSON.stringify(SAMPLE_DIR)}, { cache: false });\n`,
  );
  const result = spawnSync(process.execPath, ['--import', 'tsx', script], { cwd: PROJECT_ROOT, encoding: 'utf8', env: { ...process.env, CLIPFREEZE_LOG_LEVEL: logLevel } });
  fs.rmSync(dir, { recursive: true });
  if (result.status !== 0) throw new Error(`open-twice script failed: ${result.stderr}`);
  return result.stderr;
}

sharedTest('chestxray14 missing warning once', (t) => {
  // The sample has the official split lists of all 112,120 images, so most are missing.
  const warnings = openTwiceLog('info').match(/WARN.*images listed in the split lists are missing/g) ?? [];
  t.is(warnings.length, 1);
  const debug = openTwiceLog('debug').match(/DEBUG.*images listed in the split lists are missing/g) ?? [];
  t.is(debug.length, 1);
});
