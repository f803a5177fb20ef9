import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadTrainState, saveTrainState, stateDir, type TrainStateMeta } from '../../lib/train/checkpointState.ts';
import { forwardFlopsPerImage, trainFlopsPerImage, unitForwardFlops } from '../../lib/train/cost.ts';
import { parsePlan } from '../../lib/freeze/plan.ts';
import type { ClipGeometry } from '../../lib/freeze/units.ts';

const VIT_B32: ClipGeometry = {
  embedDim: 512,
  vision: { imageSize: 224, patchSize: 32, width: 768, layers: 12, mlpDim: 3072 },
  text: { contextLength: 77, vocabSize: 49408, width: 512, layers: 12, mlpDim: 2048 },
};

function meta(epoch: number): TrainStateMeta {
  return {
    epoch,
    step: epoch * 4,
    optimizerStep: epoch * 4,
    bestValMeanAuroc: 0.6,
    bestEpoch: epoch,
    epochsWithoutImprovement: 0,
    finished: false,
    history: [],
    nextOrder: ['b', 'a'],
    trainSeconds: 1,
    evalSeconds: 2,
    imagesSeen: 3,
  };
}

test('state round trip keeps tensors', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'state-'));
  const w = { shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, NaN]) };
  const b = { shape: [1], data: new Float32Array([0.5]) };
  saveTrainState(dir, meta(1), { weights: { w, b }, m: { w }, v: { w }, best: { b } });
  const loaded = loadTrainState(dir)!;
  t.deepEqual(loaded.meta, meta(1));
  t.deepEqual(Array.from(loaded.tensors.weights.w.data), Array.from(w.data));
  t.deepEqual(loaded.tensors.weights.w.shape, [2, 3]);
  t.deepEqual(Array.from(loaded.tensors.best.b.data), [0.5]);
  fs.rmSync(dir, { recursive: true });
});

test('state keeps only latest tensors', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'state-'));
  const tensor = { shape: [1], data: new Float32Array([1]) };
  saveTrainState(dir, meta(1), { weights: { x: tensor }, m: {}, v: {}, best: {} });
  saveTrainState(dir, meta(2), { weights: { x: { shape: [1], data: new Float32Array([2]) } }, m: {}, v: {}, best: {} });
  const files = fs.readdirSync(stateDir(dir)).sort();
  t.deepEqual(files, ['state.json', 'tensors-2-8.bin']);
  t.is(loadTrainState(dir)!.tensors.weights.x.data[0], 2);
  fs.rmSync(dir, { recursive: true });
});

test('state missing returns null', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'state-'));
  t.is(loadTrainState(dir), null);
  fs.rmSync(dir, { recursive: true });
});

test('state truncated file fails clearly', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'state-'));
  saveTrainState(dir, meta(1), { weights: { x: { shape: [4], data: new Float32Array(4) } }, m: {}, v: {}, best: {} });
  fs.truncateSync(path.join(stateDir(dir), 'tensors-1-4.bin'), 6);
  t.throws(() => loadTrainState(dir), { message: /is truncated: tensor 'x' ends at byte 16 of 6/ });
  fs.rmSync(dir, { recursive: true });
});

test('flops match ViT-B/32 forward', (t) => {
  const plan = parsePlan('head', VIT_B32);
  // By hand: 12 blocks of 715.5 MFLOP, the 231 MFLOP patch embedding and the small heads, about 8.82 GFLOP.
  const forward = forwardFlopsPerImage(VIT_B32, plan, 14);
  t.true(forward > 8.7e9 && forward < 8.9e9, String(forward));
});

test('flops count backward for trained units', (t) => {
  const block = unitForwardFlops(VIT_B32, 'vision.block.0', 14);
  const headOnly = trainFlopsPerImage(VIT_B32, parsePlan('head', VIT_B32), 14);
  const forward = forwardFlopsPerImage(VIT_B32, parsePlan('head', VIT_B32), 14);
  t.is(headOnly, forward + 2 * unitForwardFlops(VIT_B32, 'head', 14));
  const topBlock = trainFlopsPerImage(VIT_B32, parsePlan('vision.block.11', VIT_B32), 14);
  const expected = forward + 2 * block + unitForwardFlops(VIT_B32, 'vision.head', 14) + unitForwardFlops(VIT_B32, 'head', 14);
  t.is(topBlock, expected);
  const full = trainFlopsPerImage(VIT_B32, parsePlan('all', VIT_B32), 14);
  t.is(full, 3 * forward);
});

test('flops drop with truncation', (t) => {
  const block = unitForwardFlops(VIT_B32, 'vision.block.0', 14);
  const full = forwardFlopsPerImage(VIT_B32, parsePlan('head', VIT_B32), 14);
  const cut = forwardFlopsPerImage(VIT_B32, parsePlan('head', VIT_B32, 4), 14);
  t.is(full - cut, 4 * block);
});
