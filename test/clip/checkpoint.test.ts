import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadCheckpoint, type Checkpoint } from '../../lib/clip/checkpoint.ts';
import { readSafetensorsHeader, readTensor, writeSafetensors } from '../../lib/clip/safetensors.ts';
import { sha256File } from '../../lib/util/hash.ts';
import { hasShared } from '../helpers/shared.ts';
import { FIXTURE, fixturePath, readReference } from './fixture.ts';

const sharedTest = hasShared(...FIXTURE) ? test : test.skip;

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-checkpoint-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Reads every tensor of a safetensors file in file order. */
function readAll(file: string): Map<string, { shape: number[]; data: Float32Array }> {
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, info] of readSafetensorsHeader(file).tensors) tensors.set(name, { shape: info.shape, data: readTensor(info) });
  return tensors;
}

function maxDifference(a: Checkpoint, b: Checkpoint): number {
  let max = 0;
  for (const [name, tensor] of a.weights) {
    const other = b.weights.get(name)!.data;
    for (let i = 0; i < tensor.data.length; i++) max = Math.max(max, Math.abs(tensor.data[i] - other[i]));
  }
  return max;
}

sharedTest('both layouts load equal weights', (t) => {
  const openai = loadCheckpoint(fixturePath('openai-format'));
  const hf = loadCheckpoint(fixturePath('hf-format'));
  t.is(openai.format, 'openai');
  t.is(hf.format, 'hf');
  t.deepEqual([...hf.weights.keys()], [...openai.weights.keys()]);
  for (const [name, tensor] of openai.weights) t.deepEqual(hf.weights.get(name)!.shape, tensor.shape, name);
  t.is(maxDifference(openai, hf), 0);
  t.deepEqual(hf.config, openai.config);
});

sharedTest('loaded weights have reference norms', (t) => {
  const reference = readReference();
  const checkpoint = loadCheckpoint(fixturePath('hf-format'));
  t.is(checkpoint.weights.size, Object.keys(reference.param_l2_norms).length);
  for (const [name, tensor] of checkpoint.weights) {
    let sum = 0;
    for (const v of tensor.data) sum += v * v;
    const expected = reference.param_l2_norms[name];
    t.true(Math.abs(Math.sqrt(sum) - expected) <= 1e-4 * Math.max(1, expected), `${name}: norm ${Math.sqrt(sum)}, expected ${expected}`);
  }
});

sharedTest('hf projections are transposed', (t) => {
  const hf = loadCheckpoint(fixturePath('hf-format'));
  const raw = readSafetensorsHeader(fixturePath('hf-format', 'model.safetensors')).tensors.get('visual_projection.weight')!;
  const source = readTensor(raw); // [32, 128]
  const proj = hf.weights.get('visual.proj')!; // [128, 32]
  t.deepEqual(proj.shape, [128, 32]);
  t.is(proj.data[5 * 32 + 7], source[7 * 128 + 5]);
});

sharedTest('checkpoint sha256 is the file digest', (t) => {
  const file = fixturePath('openai-format', 'model.safetensors');
  const checkpoint = loadCheckpoint(fixturePath('openai-format'));
  t.is(checkpoint.sha256, sha256File(file));
  t.deepEqual(checkpoint.files, [file]);
  t.is(checkpoint.dir, fixturePath('openai-format'));
});

sharedTest('checkpoint accepts a file path', (t) => {
  const checkpoint = loadCheckpoint(fixturePath('hf-format', 'model.safetensors'));
  t.is(checkpoint.format, 'hf');
  t.is(checkpoint.config.text.heads, 2, 'config.json next to the file is used');
});

sharedTest('missing config is inferred', (t) => {
  const dir = tempDir(t);
  fs.copyFileSync(fixturePath('openai-format', 'model.safetensors'), path.join(dir, 'model.safetensors'));
  const checkpoint = loadCheckpoint(dir);
  t.is(checkpoint.config.vision.width, 128);
  t.is(checkpoint.config.vision.layers, 3);
  t.is(checkpoint.config.text.layers, 3);
  t.is(checkpoint.config.embedDim, 32);
  t.is(checkpoint.config.text.heads, 1, 'OpenAI rule: heads = width / 64');
});

sharedTest('sharded checkpoint loads via index', (t) => {
  const dir = tempDir(t);
  const tensors = [...readAll(fixturePath('hf-format', 'model.safetensors'))];
  const half = Math.floor(tensors.length / 2);
  const shards = [new Map(tensors.slice(0, half)), new Map(tensors.slice(half))];
  const weightMap: Record<string, string> = {};
  shards.forEach((shard, i) => {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    writeSafetensors(path.join(dir, file), shard);
    for (const name of shard.keys()) weightMap[name] = file;
  });
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  fs.copyFileSync(fixturePath('hf-format', 'config.json'), path.join(dir, 'config.json'));

  const sharded = loadCheckpoint(dir);
  t.is(sharded.files.length, 2);
  t.is(maxDifference(sharded, loadCheckpoint(fixturePath('hf-format'))), 0);
});

sharedTest('bf16 checkpoint loads rounded values', (t) => {
  const dir = tempDir(t);
  writeSafetensors(path.join(dir, 'model.safetensors'), readAll(fixturePath('hf-format', 'model.safetensors')), { dtype: 'BF16' });
  fs.copyFileSync(fixturePath('hf-format', 'config.json'), path.join(dir, 'config.json'));
  const bf16 = loadCheckpoint(dir);
  const f32 = loadCheckpoint(fixturePath('hf-format'));
  let worstRelative = 0;
  let lowBitsSet = 0;
  for (const [name, tensor] of bf16.weights) {
    const exact = f32.weights.get(name)!.data;
    const bits = new Uint32Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.length);
    for (let i = 0; i < tensor.data.length; i++) {
      if (bits[i] & 0xffff) lowBitsSet++;
      if (exact[i] !== 0) worstRelative = Math.max(worstRelative, Math.abs(tensor.data[i] - exact[i]) / Math.abs(exact[i]));
    }
  }
  t.is(lowBitsSet, 0, 'every value is a bfloat16 value');
  // Rounding to nearest with 8 significant bits keeps the relative error at or below 2^-8.
  t.true(worstRelative <= 2 ** -8, `worst relative error ${worstRelative}`);
  t.true(worstRelative > 0, 'some values changed');
});
