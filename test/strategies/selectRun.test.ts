import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { ClipModel } from '../../lib/clip/model.ts';
import { openDataset } from '../../lib/data/registry.ts';
import { gradientSelect } from '../../lib/strategies/gradient.ts';
import { runSelect } from '../../lib/strategies/selectRun.ts';
import { initBackend } from '../../lib/util/backend.ts';
import { sharedPath } from '../helpers/shared.ts';
import { baseConfig, checkRecord, shared, VISION_UNITS } from './helpers/selectConfig.ts';

test.before(async () => {
  await initBackend();
});

shared('gradient RGN writes run record', async (t) => {
  const { runDir, selection } = await runSelect(baseConfig({ settings: { batches: 2, batchSize: 4 } }));
  checkRecord(t, runDir, 'gradient');
  t.is(selection.plan.train.length, 3);
  t.true(selection.scores['vision.block.0'] > 0, 'RGN of a trained block is positive');
  t.is(selection.cost.imagesSeen, 8);
});

shared('gradient AutoFreeze restores weights', async (t) => {
  // AutoFreeze takes optimiser steps between batches; the caller's model must come back unchanged.
  const { model } = await ClipModel.load(sharedPath('fixtures', 'clip-mini', 'hf-format'));
  const dataset = await openDataset('chestxray14', sharedPath('data', 'chestxray14-sample'), { limit: { train: 16, val: 16, test: 8 } });
  const before = model.getWeights();
  const result = await gradientSelect(model, dataset, { method: 'autofreeze', batches: 4, batchSize: 2, interval: 2, learningRate: 1e-3, seed: 1 });
  const after = model.getWeights();
  for (const [name, tensor] of before) {
    const same = Buffer.from(after.get(name)!.data.buffer).equals(Buffer.from(tensor.data.buffer));
    t.true(same, `${name} changed`);
  }
  const rates = (result.details as { autoFreezeRate: Record<string, number> }).autoFreezeRate;
  t.true(rates['vision.block.0'] > 0, 'gradient norms change between intervals after steps');
  t.true(result.plan.train.includes('vision.head'), 'AutoFreeze freezes a prefix, never the last candidate');
  model.dispose();
});

shared('similarity MMD writes run record', async (t) => {
  const { runDir, selection } = await runSelect(
    baseConfig({
      strategy: 'similarity',
      method: 'mmd',
      source: sharedPath('data', 'natural', 'cifar10-test'),
      settings: { sourcePerClass: 1, targetImages: 10, batchSize: 5 },
    }),
  );
  checkRecord(t, runDir, 'similarity');
  t.is(selection.cost.imagesSeen, 20);
  t.is(selection.plan.train.filter((u) => VISION_UNITS.includes(u)).length, 2);
});

shared('similarity Frechet writes run record', async (t) => {
  const { runDir } = await runSelect(
    baseConfig({
      strategy: 'similarity',
      method: 'frechet',
      source: sharedPath('data', 'natural', 'cifar10-test'),
      settings: { sourcePerClass: 1, targetImages: 10, batchSize: 5 },
    }),
  );
  checkRecord(t, runDir, 'similarity');
});

shared('similarity CKA writes run record', async (t) => {
  const { runDir, selection } = await runSelect(
    baseConfig({ strategy: 'similarity', method: 'cka', settings: { targetImages: 8, batchSize: 8, adaptSteps: 2, learningRate: 1e-3 } }),
  );
  checkRecord(t, runDir, 'similarity');
  const cka = (selection.details as { cka: Record<string, number> }).cka;
  for (const unit of VISION_UNITS) t.true(cka[unit] > 0 && cka[unit] <= 1 + 1e-9, `CKA of ${unit} is ${cka[unit]}`);
});

test('select rejects unknown method', async (t) => {
  await t.throwsAsync(runSelect(baseConfig({ strategy: 'similarity', method: 'kl' })), {
    message: "Invalid method 'kl' for strategy 'similarity'. Allowed values: mmd, frechet, cka.",
  });
});

test('select MMD needs source', async (t) => {
  await t.throwsAsync(runSelect(baseConfig({ strategy: 'similarity', method: 'mmd' })), { message: /needs source-domain images: pass --source DIR/ });
});

shared('gradient rejects NaN loss', async (t) => {
  const { model } = await ClipModel.load(sharedPath('fixtures', 'clip-mini', 'hf-format'));
  const dataset = await openDataset('chestxray14', sharedPath('data', 'chestxray14-sample'), { limit: { train: 8, val: 8, test: 8 } });
  const proj = model.params.get('visual.proj')!;
  proj.assign(tf.fill(proj.shape, Number.NaN));
  await t.throwsAsync(gradientSelect(model, dataset, { method: 'rgn', batches: 1, batchSize: 2, seed: 1 }), { message: /task loss is NaN on target batch 0 \(images .+\)/ });
  model.dispose();
});
