import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { halfToFloat, readSafetensorsHeader, readTensor, writeSafetensors } from '../../lib/clip/safetensors.ts';

function tempFile(t: { teardown(fn: () => void): void }, name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-safetensors-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, name);
}

function writeHeader(file: string, header: unknown, dataBytes: number): void {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([length, json, Buffer.alloc(dataBytes)]));
}

test('half floats decode exactly', (t) => {
  const cases: [number, number][] = [
    [0x3c00, 1],
    [0xc000, -2],
    [0x3555, 0.333251953125],
    [0x7bff, 65504],
    [0x0001, 2 ** -24],
    [0x03ff, 1023 * 2 ** -24],
    [0x8000, -0],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
  ];
  for (const [bits, expected] of cases) t.is(halfToFloat(bits), expected, `0x${bits.toString(16)}`);
  t.true(Number.isNaN(halfToFloat(0x7e00)));
});

test('f32 tensors round-trip', (t) => {
  const file = tempFile(t, 'a.safetensors');
  const data = new Float32Array([1.5, -2, 3.25, 0, 1e-8, 7]);
  writeSafetensors(file, new Map([['w', { shape: [2, 3], data }], ['s', { shape: [], data: new Float32Array([4]) }]]));
  const header = readSafetensorsHeader(file);
  t.deepEqual([...header.tensors.keys()], ['w', 's']);
  t.deepEqual(header.tensors.get('w')!.shape, [2, 3]);
  t.deepEqual(Array.from(readTensor(header.tensors.get('w')!)), Array.from(data));
  t.deepEqual(Array.from(readTensor(header.tensors.get('s')!)), [4]);
});

test('header with invalid json fails', (t) => {
  const file = tempFile(t, 'bad.safetensors');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(5n);
  fs.writeFileSync(file, Buffer.concat([length, Buffer.from('{nope')]));
  t.throws(() => readSafetensorsHeader(file), { message: /the header is not valid JSON/ });
});

test('byte count mismatch names the tensor', (t) => {
  const file = tempFile(t, 'bad.safetensors');
  writeHeader(file, { w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 12] } }, 12);
  t.throws(() => readSafetensorsHeader(file), { message: /tensor 'w' \(F32, shape \[2, 2\]\) needs 16 bytes but data_offsets span 12/ });
});

test('entry without dtype is rejected', (t) => {
  const file = tempFile(t, 'bad.safetensors');
  writeHeader(file, { w: { shape: [1], data_offsets: [0, 4] } }, 4);
  t.throws(() => readSafetensorsHeader(file), { message: /tensor 'w' lacks dtype, shape or data_offsets/ });
});

test('unsupported dtype read is rejected', (t) => {
  const file = tempFile(t, 'ints.safetensors');
  writeHeader(file, { ids: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, 16);
  const info = readSafetensorsHeader(file).tensors.get('ids')!;
  t.throws(() => readTensor(info), { message: /Unsupported dtype I64 for tensor 'ids'.*Supported dtypes: F32, F16, BF16/ });
});
