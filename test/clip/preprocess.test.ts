import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import sharp from 'sharp';
import {
  DEFAULT_PREPROCESS,
  ImageDecodeError,
  preprocessImage,
  preprocessKey,
  resizedSize,
  type RawImage,
} from '../../lib/clip/preprocess.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

const sharedTest = hasShared('fixtures', 'clip-mini') ? test : test.skip;
const fixture = (...parts: string[]) => sharedPath('fixtures', 'clip-mini', ...parts);

/** Reads one float32 tensor from a safetensors file: u64 header length, JSON header, data. */
function readFloat32Tensor(file: string, name: string): { shape: number[]; data: Float32Array } {
  const bytes = fs.readFileSync(file);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const entry = header[name];
  const [begin, end] = entry.data_offsets;
  const copy = bytes.subarray(8 + headerLength + begin, 8 + headerLength + end);
  return { shape: entry.shape, data: new Float32Array(copy.buffer.slice(copy.byteOffset, copy.byteOffset + copy.byteLength)) };
}

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-pre-'));
}

sharedTest('fixture images match reference pixels', async (t) => {
  const reference = JSON.parse(fs.readFileSync(fixture('reference.json'), 'utf8')) as { images: string[] };
  const expected = readFloat32Tensor(fixture('pixel_values.safetensors'), 'pixel_values');
  t.deepEqual(expected.shape, [reference.images.length, 3, 224, 224]);
  const perImage = 3 * 224 * 224;

  for (const [i, name] of reference.images.entries()) {
    const actual = await preprocessImage(fixture('images', name), DEFAULT_PREPROCESS);
    t.is(actual.length, perImage);
    let sum = 0;
    let max = 0;
    for (let j = 0; j < perImage; j++) {
      const diff = Math.abs(actual[j] - expected.data[i * perImage + j]);
      sum += diff;
      max = Math.max(max, diff);
    }
    const mean = sum / perImage;
    t.log(`${name}: mean abs diff ${mean.toExponential(3)}, max abs diff ${max.toExponential(3)}`);
    t.true(mean < 0.02, `${name}: mean abs diff ${mean} is not below 0.02`);
    // Two 8-bit steps after normalisation: what a different JPEG decoder build could change.
    t.true(max < 2 / 255 / 0.26, `${name}: max abs diff ${max} is above two 8-bit steps`);
  }
});

test('resized size follows torchvision', (t) => {
  t.deepEqual(resizedSize(512, 512, 224), [224, 224]);
  t.deepEqual(resizedSize(640, 480, 224), [298, 224]);
  t.deepEqual(resizedSize(300, 1000, 224), [224, 746]);
  t.deepEqual(resizedSize(224, 500, 224), [224, 500]);
});

test('constant image stays constant', async (t) => {
  const raw: RawImage = { data: new Uint8Array(300 * 200 * 3).fill(128), width: 300, height: 200, channels: 3 };
  const out = await preprocessImage(raw, DEFAULT_PREPROCESS);
  for (let c = 0; c < 3; c++) {
    const expected = (128 / 255 - DEFAULT_PREPROCESS.mean[c]) / DEFAULT_PREPROCESS.std[c];
    const plane = out.subarray(c * 224 * 224, (c + 1) * 224 * 224);
    t.true(plane.every((v) => Math.abs(v - expected) < 1e-5), `channel ${c}`);
  }
});

test('center crop takes the middle', async (t) => {
  // A 448x224 image, left half black and right half white, cropped to its middle 224 columns.
  const width = 448;
  const data = new Uint8Array(width * 224 * 3);
  for (let y = 0; y < 224; y++) for (let x = width / 2; x < width; x++) data.fill(255, (y * width + x) * 3, (y * width + x) * 3 + 3);
  const out = await preprocessImage({ data, width, height: 224, channels: 3 }, { size: 224, mean: [0, 0, 0], std: [1, 1, 1] });
  t.is(out[100 * 224 + 10], 0);
  t.is(out[100 * 224 + 213], 1);
  t.is(out[100 * 224 + 111], 0);
  t.is(out[100 * 224 + 112], 1);
});

test('grey png equals its rgb copy', async (t) => {
  const dir = tmpDir();
  const grey = Buffer.alloc(64 * 48);
  for (let i = 0; i < grey.length; i++) grey[i] = (i * 37) % 256;
  await sharp(grey, { raw: { width: 64, height: 48, channels: 1 } }).png().toFile(path.join(dir, 'grey.png'));
  const rgb = Buffer.alloc(64 * 48 * 3);
  for (let i = 0; i < grey.length; i++) rgb.fill(grey[i], i * 3, i * 3 + 3);
  await sharp(rgb, { raw: { width: 64, height: 48, channels: 3 } }).png().toFile(path.join(dir, 'rgb.png'));
  const a = await preprocessImage(path.join(dir, 'grey.png'), DEFAULT_PREPROCESS);
  const b = await preprocessImage(path.join(dir, 'rgb.png'), DEFAULT_PREPROCESS);
  t.deepEqual(a, b);
});

test('opaque rgba equals rgb', async (t) => {
  const dir = tmpDir();
  const rgba = Buffer.alloc(50 * 40 * 4);
  const rgb = Buffer.alloc(50 * 40 * 3);
  for (let p = 0; p < 50 * 40; p++) {
    for (let c = 0; c < 3; c++) rgba[p * 4 + c] = rgb[p * 3 + c] = (p * (c + 3)) % 256;
    rgba[p * 4 + 3] = 255;
  }
  await sharp(rgba, { raw: { width: 50, height: 40, channels: 4 } }).png().toFile(path.join(dir, 'rgba.png'));
  await sharp(rgb, { raw: { width: 50, height: 40, channels: 3 } }).png().toFile(path.join(dir, 'rgb.png'));
  t.deepEqual(await preprocessImage(path.join(dir, 'rgba.png'), DEFAULT_PREPROCESS), await preprocessImage(path.join(dir, 'rgb.png'), DEFAULT_PREPROCESS));
});

test('semi-transparent rgba uses premultiplied alpha', async (t) => {
  // Pillow resizes RGBA as premultiplied RGBa: 200 at alpha 128 becomes 100, and back 255 * 100 / 128 = 199.
  const rgba = new Uint8Array(300 * 200 * 4);
  for (let p = 0; p < 300 * 200; p++) rgba.set([200, 200, 200, 128], p * 4);
  const out = await preprocessImage({ data: rgba, width: 300, height: 200, channels: 4 }, { size: 224, mean: [0, 0, 0], std: [1, 1, 1] });
  t.true(Math.abs(out[0] - 199 / 255) < 1e-6, `first value ${out[0] * 255} / 255`);
  t.true(Math.abs(out[2 * 224 * 224 + 1000] - 199 / 255) < 1e-6, `blue value ${out[2 * 224 * 224 + 1000] * 255} / 255`);
});

test('16-bit grey png keeps its range', async (t) => {
  const dir = tmpDir();
  const file = path.join(dir, 'grey16.png');
  const values = new Uint16Array(32 * 32).fill(40000);
  await sharp(values, { raw: { width: 32, height: 32, channels: 1 } })
    .toColourspace('grey16')
    .png()
    .toFile(file);
  const meta = await sharp(file).metadata();
  t.is(meta.depth, 'ushort');
  const out = await preprocessImage(file, { size: 32, mean: [0, 0, 0], std: [1, 1, 1] });
  t.true(Math.abs(out[0] - 40000 / 65535) < 1e-4, `first value ${out[0]}`);
  t.true(Math.abs(out[2 * 32 * 32 + 5] - 40000 / 65535) < 1e-4, `blue value ${out[2 * 32 * 32 + 5]}`);
});

sharedTest('truncated png throws decode error', async (t) => {
  const dir = tmpDir();
  const file = path.join(dir, 'truncated.png');
  const bytes = fs.readFileSync(fixture('images', 'cxr_512_00000075_000.png'));
  fs.writeFileSync(file, bytes.subarray(0, Math.floor(bytes.length / 2)));
  const error = await t.throwsAsync(preprocessImage(file, DEFAULT_PREPROCESS), { instanceOf: ImageDecodeError });
  t.is(error?.file, file);
  t.true(error?.message.includes(file));
});

sharedTest('truncated jpeg throws decode error', async (t) => {
  const file = path.join(tmpDir(), 'truncated.jpg');
  const bytes = fs.readFileSync(fixture('images', 'imagenette_ILSVRC2012_val_00009111.JPEG'));
  fs.writeFileSync(file, bytes.subarray(0, bytes.length - 20));
  const error = await t.throwsAsync(preprocessImage(file, DEFAULT_PREPROCESS), { instanceOf: ImageDecodeError });
  t.is(error?.file, file);
});

test('empty file throws decode error', async (t) => {
  const file = path.join(tmpDir(), 'empty.png');
  fs.writeFileSync(file, '');
  await t.throwsAsync(preprocessImage(file, DEFAULT_PREPROCESS), { instanceOf: ImageDecodeError });
});

test('non-image file throws decode error', async (t) => {
  const dir = tmpDir();
  const file = path.join(dir, 'notes.png');
  fs.writeFileSync(file, 'not an image');
  const error = await t.throwsAsync(preprocessImage(file, DEFAULT_PREPROCESS), { instanceOf: ImageDecodeError });
  t.true(error?.message.includes('notes.png'));
});

test('missing file throws decode error', async (t) => {
  const file = path.join(tmpDir(), 'absent.jpg');
  await t.throwsAsync(preprocessImage(file, DEFAULT_PREPROCESS), { instanceOf: ImageDecodeError });
});

test('missing file error says not found', async (t) => {
  const file = path.join(tmpDir(), 'absent.jpg');
  const error = await t.throwsAsync(preprocessImage(file, DEFAULT_PREPROCESS));
  t.regex(error?.message ?? '', /file not found/);
  t.notRegex(error?.message ?? '', /complete PNG/);
});

test('directory path throws decode error', async (t) => {
  const dir = tmpDir();
  const error = await t.throwsAsync(preprocessImage(dir, DEFAULT_PREPROCESS), { instanceOf: ImageDecodeError });
  t.regex(error?.message ?? '', /is a directory/);
  t.is(error?.file, dir);
});

test('raw image with wrong length is rejected', async (t) => {
  const raw: RawImage = { data: new Uint8Array(10), width: 4, height: 4, channels: 3 };
  await t.throwsAsync(preprocessImage(raw, DEFAULT_PREPROCESS), { message: /expected 48/ });
});

test('preprocess key changes with settings', (t) => {
  const key = preprocessKey(DEFAULT_PREPROCESS);
  t.is(key, preprocessKey({ ...DEFAULT_PREPROCESS }));
  t.not(key, preprocessKey({ ...DEFAULT_PREPROCESS, size: 336 }));
  t.not(key, preprocessKey({ ...DEFAULT_PREPROCESS, mean: [0.5, 0.5, 0.5] }));
});
