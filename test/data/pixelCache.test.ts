import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadBatch } from '../../lib/data/batches.ts';
import { ChestXray14Dataset } from '../../lib/data/chestxray14.ts';
import { SPLITS, type Sample } from '../../lib/data/dataset.ts';
import { PixelCache } from '../../lib/data/pixelCache.ts';
import { preprocessImage, preprocessKey, type PreprocessConfig } from '../../lib/clip/preprocess.ts';
import { hasShared } from '../helpers/shared.ts';
import { makeTempDataset, sampleImages } from './chestxray14Fixture.ts';

const sharedTest = hasShared('data', 'chestxray14-sample') ? test : test.skip;

const cfg: PreprocessConfig = { size: 32, mean: [0.48, 0.46, 0.41], std: [0.27, 0.26, 0.28] };

/** Opens a dataset whose decoder counts its calls, with a cache in `cacheDir`. */
function openCounting(dir: string, cacheDir: string) {
  const counter = { decodes: 0 };
  const dataset = ChestXray14Dataset.open(dir, {
    cacheDir,
    valFraction: 0,
    decode: async (file, config) => {
      counter.decodes++;
      return preprocessImage(file, config);
    },
  });
  const samples: Sample[] = SPLITS.flatMap((s) => dataset.samples(s));
  return { dataset, samples, counter };
}

function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

sharedTest('pixel cache hits on second load', async (t) => {
  const dir = makeTempDataset({ images: sampleImages(3) });
  const cacheDir = tempDir('clipfreeze-pixels-');

  const first = openCounting(dir, cacheDir);
  const pixels = await loadBatch(first.dataset, first.samples, cfg);
  t.is(first.counter.decodes, 3);

  // A new dataset object simulates a second run: only the on-disk cache is shared.
  const second = openCounting(dir, cacheDir);
  const again = await loadBatch(second.dataset, second.samples, cfg);
  t.is(second.counter.decodes, 0);
  t.is(second.dataset.pixelCache!.stats.hits, 3);
  t.deepEqual(again.pixels, pixels.pixels);
  fs.rmSync(dir, { recursive: true });
  fs.rmSync(cacheDir, { recursive: true });
});

sharedTest('pixel cache stores grey compactly', async (t) => {
  const images = sampleImages(1);
  const dir = makeTempDataset({ images });
  const cacheDir = tempDir('clipfreeze-pixels-');
  const run = openCounting(dir, cacheDir);
  const decoded = await loadBatch(run.dataset, run.samples, cfg);

  // 44-byte header plus one byte per pixel of one plane, instead of 3 * 32 * 32 float32 values.
  const entry = run.dataset.pixelCache!.entryPath(path.join(dir, 'images', images[0]), preprocessKey(cfg))!;
  t.is(fs.statSync(entry).size, 44 + 32 * 32);

  const again = openCounting(dir, cacheDir);
  const cached = await loadBatch(again.dataset, again.samples, cfg);
  t.is(again.counter.decodes, 0);
  t.deepEqual(new Uint32Array(cached.pixels.buffer), new Uint32Array(decoded.pixels.buffer), 'bit-identical pixels');
  fs.rmSync(dir, { recursive: true });
  fs.rmSync(cacheDir, { recursive: true });
});

sharedTest('pixel cache misses after mtime change', async (t) => {
  const images = sampleImages(2);
  const dir = makeTempDataset({ images });
  const cacheDir = tempDir('clipfreeze-pixels-');

  const first = openCounting(dir, cacheDir);
  await loadBatch(first.dataset, first.samples, cfg);

  const touched = path.join(dir, 'images', images[0]);
  const later = new Date(Date.now() + 60_000);
  fs.utimesSync(touched, later, later);

  const second = openCounting(dir, cacheDir);
  await loadBatch(second.dataset, second.samples, cfg);
  t.is(second.counter.decodes, 1);
  t.is(second.dataset.pixelCache!.stats.misses, 1);
  t.is(second.dataset.pixelCache!.stats.hits, 1);
  fs.rmSync(dir, { recursive: true });
  fs.rmSync(cacheDir, { recursive: true });
});

sharedTest('pixel cache misses after config change', async (t) => {
  const dir = makeTempDataset({ images: sampleImages(1) });
  const cacheDir = tempDir('clipfreeze-pixels-');
  const run = openCounting(dir, cacheDir);
  await loadBatch(run.dataset, run.samples, cfg);
  await loadBatch(run.dataset, run.samples, { ...cfg, size: 16 });
  t.is(run.counter.decodes, 2);
  fs.rmSync(dir, { recursive: true });
  fs.rmSync(cacheDir, { recursive: true });
});

test('pixel cache recomputes corrupt entry', async (t) => {
  const cacheDir = tempDir('clipfreeze-pixels-');
  const file = path.join(cacheDir, 'image.bin');
  fs.writeFileSync(file, 'not an image');
  const values = Float32Array.from([1, 2, 3.5, -4]);
  let computed = 0;
  const compute = async () => {
    computed++;
    return values;
  };

  const cache = new PixelCache(cacheDir);
  await cache.getOrCompute(file, 'key', compute);
  const entry = cache.entryPath(file, 'key')!;
  t.true(fs.existsSync(entry));

  // Flip one byte of the pixels: the checksum no longer matches.
  const bytes = fs.readFileSync(entry);
  bytes[bytes.length - 1] ^= 0xff;
  fs.writeFileSync(entry, bytes);
  t.deepEqual(await cache.getOrCompute(file, 'key', compute), values);
  t.is(computed, 2);
  t.is(cache.stats.corrupt, 1);

  // Truncate the entry: the length check fails.
  fs.writeFileSync(entry, fs.readFileSync(entry).subarray(0, 20));
  t.deepEqual(await cache.getOrCompute(file, 'key', compute), values);
  t.is(computed, 3);
  t.is(cache.stats.corrupt, 2);

  // The rewritten entry is valid again.
  t.deepEqual(await cache.getOrCompute(file, 'key', compute), values);
  t.is(computed, 3);
  fs.rmSync(cacheDir, { recursive: true });
});

test('pixel cache leaves no temporary files', async (t) => {
  const cacheDir = tempDir('clipfreeze-pixels-');
  const file = path.join(cacheDir, 'image.bin');
  fs.writeFileSync(file, 'x');
  const cache = new PixelCache(path.join(cacheDir, 'cache'));
  await cache.getOrCompute(file, 'key', async () => new Float32Array(8));
  const entries = fs.readdirSync(path.join(cacheDir, 'cache'), { recursive: true }).map(String);
  t.deepEqual(entries.filter((name) => name.includes('.tmp-')), []);
  t.is(entries.filter((name) => name.endsWith('.f32')).length, 1);
  fs.rmSync(cacheDir, { recursive: true });
});

test('pixel cache default folder', (t) => {
  const saved = process.env.CLIPFREEZE_CACHE_DIR;
  process.env.CLIPFREEZE_CACHE_DIR = '/tmp/somewhere';
  t.is(new PixelCache().dir, path.join('/tmp/somewhere', 'pixels'));
  delete process.env.CLIPFREEZE_CACHE_DIR;
  t.is(new PixelCache().dir, path.resolve('.cache', 'pixels'));
  if (saved !== undefined) process.env.CLIPFREEZE_CACHE_DIR = saved;
});

sharedTest('load batch skips corrupt image', async (t) => {
  const images = sampleImages(3);
  const dir = makeTempDataset({ images });
  fs.writeFileSync(path.join(dir, 'images', images[2]), Buffer.from('\x89PNG\r\n\x1a\n truncated', 'binary'));
  const dataset = ChestXray14Dataset.open(dir, { cache: false, valFraction: 0 });
  const samples = SPLITS.flatMap((s) => dataset.samples(s));

  const batch = await loadBatch(dataset, samples, cfg, { concurrency: 2 });
  t.deepEqual(batch.kept.map((s) => s.id).sort(), images.slice(0, 2));
  t.is(batch.pixels.length, 2 * 3 * 32 * 32);
  t.is(dataset.skipped().corrupt, 1);

  // Each kept image's pixels sit at its position in `kept`.
  const single = await dataset.loadPixels(batch.kept[1], cfg);
  t.deepEqual(batch.pixels.subarray(3 * 32 * 32), single);
  fs.rmSync(dir, { recursive: true });
});
