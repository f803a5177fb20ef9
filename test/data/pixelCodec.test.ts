import test from 'ava';
import { channelTable, decodePixels, encodePixels, type Normalisation } from '../../lib/data/pixelCodec.ts';
import { createRng, randomInt } from '../../lib/util/rng.ts';

const norm: Normalisation = { mean: [0.48145466, 0.4578275, 0.40821073], std: [0.26862954, 0.26130258, 0.27577711] };
const plane = 50;

/** Normalises CHW bytes with the same float32 steps as the CLIP preprocessing. */
function normalise(bytes: number[][]): Float32Array {
  const out = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    const table = channelTable(norm.mean[c], norm.std[c]);
    for (let i = 0; i < plane; i++) out[c * plane + i] = table[bytes[c][i]];
  }
  return out;
}

function bits(values: Float32Array): Uint32Array {
  return new Uint32Array(values.buffer, values.byteOffset, values.length);
}

function randomBytes(seed: number): number[] {
  const rng = createRng(seed);
  return Array.from({ length: plane }, (_, i) => (i < 2 ? i * 255 : randomInt(rng, 256)));
}

test('pixel codec stores grey as one plane', (t) => {
  const grey = randomBytes(1);
  const pixels = normalise([grey, grey, grey]);
  const { encoding, data } = encodePixels(pixels, norm);
  t.is(encoding, 'uint8-grey');
  t.is(data.length, plane);
  t.deepEqual(bits(decodePixels(encoding, data, pixels.length, norm)), bits(pixels));
});

test('pixel codec stores colour as bytes', (t) => {
  const pixels = normalise([randomBytes(1), randomBytes(2), randomBytes(3)]);
  const { encoding, data } = encodePixels(pixels, norm);
  t.is(encoding, 'uint8-rgb');
  t.is(data.length, 3 * plane);
  t.deepEqual(bits(decodePixels(encoding, data, pixels.length, norm)), bits(pixels));
});

test('pixel codec keeps non-byte values', (t) => {
  const pixels = normalise([randomBytes(1), randomBytes(1), randomBytes(1)]);
  pixels[7] = Math.fround(pixels[7] + 1e-3);
  const { encoding, data } = encodePixels(pixels, norm);
  t.is(encoding, 'float32');
  t.deepEqual(bits(decodePixels(encoding, data, pixels.length, norm)), bits(pixels));
});

test('pixel codec rejects other normalisation', (t) => {
  const pixels = normalise([randomBytes(4), randomBytes(4), randomBytes(4)]);
  const other: Normalisation = { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };
  t.is(encodePixels(pixels, other).encoding, 'float32');
  t.is(encodePixels(pixels, null).encoding, 'float32');
});

test('pixel codec keeps NaN as float', (t) => {
  const pixels = normalise([randomBytes(5), randomBytes(5), randomBytes(5)]);
  pixels[0] = NaN;
  const { encoding, data } = encodePixels(pixels, norm);
  t.is(encoding, 'float32');
  t.true(Number.isNaN(decodePixels(encoding, data, pixels.length, norm)[0]));
});
