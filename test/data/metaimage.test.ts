import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { readMetaImage, readMetaImageHeader, readMetaImageSlice } from '../../lib/data/metaimage.ts';
import { VolumeFormatError, voxelToWorld, worldToVoxel } from '../../lib/data/volume.ts';
import { createRng, randomInt } from '../../lib/util/rng.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

const sharedTest = hasShared('data', 'luna16-sample') ? test : test.skip;
const SERIES_0001 = '1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192';
const MHD_0001 = sharedPath('data', 'luna16-sample', 'luna16_format_derived', `${SERIES_0001}.mhd`);

function nodulesInSlabs(): Record<string, string>[] {
  const [head, ...rows] = fs.readFileSync(sharedPath('data', 'luna16-sample', 'nodules_in_slabs.csv'), 'utf8').trim().split('\n');
  const keys = head.split(',');
  return rows.map((row) => Object.fromEntries(row.split(',').map((v, i) => [keys[i], v])));
}

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-mhd-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function writeMhd(dir: string, name: string, fields: Record<string, string>, raw?: Buffer): string {
  // ElementDataFile must be the last field: MetaIO stops reading the header there.
  const { ElementDataFile, ...rest } = fields;
  const lines = Object.entries(rest).map(([k, v]) => `${k} = ${v}`);
  if (ElementDataFile !== undefined) lines.push(`ElementDataFile = ${ElementDataFile}`);
  const file = path.join(dir, `${name}.mhd`);
  fs.writeFileSync(file, lines.join('\n') + '\n');
  if (raw) fs.writeFileSync(path.join(dir, fields.ElementDataFile), raw);
  return file;
}

const SMALL_FIELDS = {
  ObjectType: 'Image',
  NDims: '3',
  DimSize: '3 2 2',
  ElementSpacing: '0.5 0.5 2',
  Offset: '10 20 30',
  TransformMatrix: '1 0 0 0 1 0 0 0 1',
  ElementType: 'MET_SHORT',
  ElementDataFile: 'small.raw',
};

function int16Bytes(values: number[], bigEndian = false): Buffer {
  const buffer = Buffer.alloc(values.length * 2);
  values.forEach((v, i) => (bigEndian ? buffer.writeInt16BE(v, 2 * i) : buffer.writeInt16LE(v, 2 * i)));
  return buffer;
}

const SMALL_VALUES = [-1024, -500, 0, 40, 100, 3000, -1, 1, 2, 3, 4, 5];

sharedTest('metaimage header of LUNA16 slab', (t) => {
  const header = readMetaImageHeader(MHD_0001);
  t.deepEqual(header.dims, [512, 512, 16]);
  t.deepEqual(header.spacing, [0.703125, 0.703125, 2.5]);
  t.deepEqual(header.origin, [-166.0, -171.699997, -132.5]);
  t.is(header.elementType, 'MET_SHORT');
  t.true(header.littleEndian);
});

sharedTest('metaimage nodule world to voxel', (t) => {
  const volume = readMetaImageHeader(MHD_0001);
  const nodule = nodulesInSlabs().find((row) => row.seriesuid === SERIES_0001)!;
  const [i, j, k] = worldToVoxel({ ...volume, source: MHD_0001 }, [Number(nodule.coordX), Number(nodule.coordY), Number(nodule.coordZ)]);
  t.true(Math.abs(i - Number(nodule.voxel_col_x)) < 0.01, `column ${i}`);
  t.true(Math.abs(j - Number(nodule.voxel_row_y)) < 0.01, `row ${j}`);
  t.true(Math.abs(k - Number(nodule.slab_slice_index_k)) < 0.01, `slice ${k}`);
});

sharedTest('metaimage nodule core is soft tissue', (t) => {
  const volume = readMetaImage(MHD_0001);
  const nodule = nodulesInSlabs().find((row) => row.seriesuid === SERIES_0001)!;
  const [ci, cj, ck] = worldToVoxel(volume, [Number(nodule.coordX), Number(nodule.coordY), Number(nodule.coordZ)]);

  // Mean HU over voxels within a quarter of the diameter of the centre (the core).
  const radius = Number(nodule.diameter_mm) / 4;
  const [nx, ny, nz] = volume.dims;
  let sum = 0;
  let count = 0;
  for (let k = 0; k < nz; k++) {
    for (let j = Math.floor(cj - 20); j <= cj + 20; j++) {
      for (let i = Math.floor(ci - 20); i <= ci + 20; i++) {
        const dx = (i - ci) * volume.spacing[0];
        const dy = (j - cj) * volume.spacing[1];
        const dz = (k - ck) * volume.spacing[2];
        if (dx * dx + dy * dy + dz * dz > radius * radius) continue;
        sum += volume.data[i + nx * (j + ny * k)];
        count++;
      }
    }
  }
  t.true(count > 10, `core voxels ${count}`);
  t.true(sum / count > 0, `mean core HU ${sum / count}`);
  t.true(sum / count < 300, `mean core HU ${sum / count}`);
});

sharedTest('metaimage slice read matches volume', (t) => {
  const header = readMetaImageHeader(MHD_0001);
  const volume = readMetaImage(MHD_0001);
  const slice = readMetaImageSlice(header, 7);
  t.deepEqual(Array.from(slice), Array.from(volume.data.subarray(7 * 512 * 512, 8 * 512 * 512)));
});

test('metaimage big-endian data', (t) => {
  const dir = tempDir(t);
  const file = writeMhd(dir, 'small', { ...SMALL_FIELDS, BinaryDataByteOrderMSB: 'True' }, int16Bytes(SMALL_VALUES, true));
  t.deepEqual(Array.from(readMetaImage(file).data), SMALL_VALUES);
});

test('metaimage zlib-compressed data', (t) => {
  const dir = tempDir(t);
  const compressed = zlib.deflateSync(int16Bytes(SMALL_VALUES));
  const file = writeMhd(dir, 'small', { ...SMALL_FIELDS, CompressedData: 'True', CompressedDataSize: String(compressed.length) }, compressed);
  t.deepEqual(Array.from(readMetaImage(file).data), SMALL_VALUES);
  t.deepEqual(Array.from(readMetaImageSlice(readMetaImageHeader(file), 1)), SMALL_VALUES.slice(6));
});

test('metaimage local data in mha', (t) => {
  const dir = tempDir(t);
  const header = Object.entries({ ...SMALL_FIELDS, ElementDataFile: 'LOCAL' }).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n';
  const file = path.join(dir, 'small.mha');
  fs.writeFileSync(file, Buffer.concat([Buffer.from(header, 'latin1'), int16Bytes(SMALL_VALUES)]));
  t.deepEqual(Array.from(readMetaImage(file).data), SMALL_VALUES);
});

test('metaimage rotated direction round trip', (t) => {
  const dir = tempDir(t);
  // Axis 0 points to -y, axis 1 to +x, axis 2 to -z.
  const file = writeMhd(dir, 'small', { ...SMALL_FIELDS, TransformMatrix: '0 -1 0 1 0 0 0 0 -1' }, int16Bytes(SMALL_VALUES));
  const volume = readMetaImage(file);
  const world = voxelToWorld(volume, [2, 1, 1]);
  t.deepEqual(world, [10 + 0.5, 20 - 1, 30 - 2]);
  const back = worldToVoxel(volume, world);
  t.true(back.every((v, a) => Math.abs(v - [2, 1, 1][a]) < 1e-9), `voxel ${back}`);
});

test('metaimage truncated raw names file', (t) => {
  const dir = tempDir(t);
  const file = writeMhd(dir, 'small', SMALL_FIELDS, int16Bytes(SMALL_VALUES).subarray(0, 15));
  const error = t.throws(() => readMetaImage(file));
  t.regex(error!.message, /small\.raw/);
  t.regex(error!.message, /truncated/);
});

test('metaimage missing DimSize names field', (t) => {
  const dir = tempDir(t);
  const { DimSize: _, ...fields } = SMALL_FIELDS;
  const file = writeMhd(dir, 'small', fields, int16Bytes(SMALL_VALUES));
  const error = t.throws(() => readMetaImageHeader(file));
  t.regex(error!.message, /small\.mhd/);
  t.regex(error!.message, /DimSize/);
});

test('metaimage unknown ElementType rejected', (t) => {
  const dir = tempDir(t);
  const file = writeMhd(dir, 'small', { ...SMALL_FIELDS, ElementType: 'MET_FLOAT16' }, int16Bytes(SMALL_VALUES));
  const error = t.throws(() => readMetaImageHeader(file));
  t.regex(error!.message, /MET_FLOAT16/);
});

test('metaimage missing raw file named', (t) => {
  const dir = tempDir(t);
  const file = writeMhd(dir, 'small', SMALL_FIELDS);
  const error = t.throws(() => readMetaImageHeader(file));
  t.regex(error!.message, /small\.raw/);
  t.regex(error!.message, /not found/);
});

test('metaimage malformed header line', (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'bad.mhd');
  fs.writeFileSync(file, 'NDims 3\nElementDataFile = x.raw\n');
  const error = t.throws(() => readMetaImageHeader(file));
  t.regex(error!.message, /bad\.mhd/);
  t.regex(error!.message, /NDims 3/);
});

test('metaimage random header damage handled', (t) => {
  const dir = tempDir(t);
  const file = writeMhd(dir, 'small', SMALL_FIELDS, int16Bytes(SMALL_VALUES));
  const text = fs.readFileSync(file, 'latin1');
  const rng = createRng(11);
  const unclean: string[] = [];
  let rejected = 0;
  for (let trial = 0; trial < 600; trial++) {
    const chars = text.split('');
    for (let edit = 0; edit <= randomInt(rng, 2); edit++) chars[randomInt(rng, chars.length)] = String.fromCharCode(32 + randomInt(rng, 95));
    fs.writeFileSync(file, chars.join(''), 'latin1');

    // Either a volume with finite geometry, or a VolumeFormatError naming the header or data file.
    try {
      const volume = readMetaImage(file);
      const geometry = [...volume.spacing, ...volume.origin, ...volume.direction.flat()];
      if (!geometry.every(Number.isFinite)) unclean.push(`trial ${trial}: non-finite geometry ${geometry}`);
    } catch (error) {
      const named = (error as Error).message.includes('small.mhd') || (error as Error).message.includes('small.raw');
      if (!(error instanceof VolumeFormatError) || !named) unclean.push(`trial ${trial}: ${(error as Error).name}: ${(error as Error).message}`);
      else rejected++;
    }
  }
  t.deepEqual(unclean, []);
  t.true(rejected > 50, `rejected ${rejected}`);
});

