import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { ClipModel } from '../../lib/clip/model.ts';
import { readSafetensorsHeader, readTensor } from '../../lib/clip/safetensors.ts';
import { layerUnits } from '../../lib/freeze/units.ts';
import { accumulateGradients, disposeGradients } from '../../lib/strategies/accumulate.ts';
import { autoFreezeRates, averageRgn, choosePlan, percentileOf, unitGradientNorms, type UnitNorms } from '../../lib/strategies/gradient.ts';
import { readJson } from '../../lib/util/atomic.ts';
import { initBackend } from '../../lib/util/backend.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

const fixture = hasShared('fixtures', 'clip-mini') ? test : test.skip;

interface Reference {
  token_ids: number[][];
  loss: { loss_weights: number[][]; value?: number } & Record<string, unknown>;
  grad_l2_norms: Record<string, number>;
  param_l2_norms: Record<string, number>;
}

// One backend initialisation before any test: concurrent first calls would race to select one.
test.before(async () => {
  await initBackend();
});

fixture('unit gradient norms match reference', async (t) => {
  const reference = readJson<Reference>(sharedPath('fixtures', 'clip-mini', 'reference.json'));
  const { model } = await ClipModel.load(sharedPath('fixtures', 'clip-mini', 'hf-format'));
  const header = readSafetensorsHeader(sharedPath('fixtures', 'clip-mini', 'pixel_values.safetensors'));
  const info = header.tensors.get('pixel_values')!;
  const pixels = tf.tensor4d(readTensor(info), info.shape as [number, number, number, number]);
  const ids = reference.token_ids;
  const weights = tf.tensor2d(reference.loss.loss_weights);

  // The fixture's loss: sum(logits_per_image * loss_weights) / numel.
  const loss = (): tf.Scalar => tf.tidy(() => tf.div(tf.sum(tf.mul(model.forward(pixels, ids).logitsPerImage, weights)), weights.size) as tf.Scalar);
  const units = layerUnits(model.config).filter((u) => u.name !== 'head');
  const norms = unitGradientNorms(model.params, units, loss);

  for (const unit of units) {
    const expectedGrad = Math.sqrt(unit.params.reduce((s, p) => s + reference.grad_l2_norms[p.name] ** 2, 0));
    const expectedWeight = Math.sqrt(unit.params.reduce((s, p) => s + reference.param_l2_norms[p.name] ** 2, 0));
    const gradError = Math.abs(norms.gradNorm[unit.name] - expectedGrad) / expectedGrad;
    const weightError = Math.abs(norms.weightNorm[unit.name] - expectedWeight) / expectedWeight;
    t.true(gradError < 1e-3, `${unit.name}: gradient norm ${norms.gradNorm[unit.name]} vs reference ${expectedGrad} (relative error ${gradError})`);
    t.true(weightError < 1e-3, `${unit.name}: weight norm ${norms.weightNorm[unit.name]} vs reference ${expectedWeight}`);
  }
  if (typeof reference.loss.value === 'number') t.true(Math.abs(norms.loss - reference.loss.value) < 1e-4 * Math.max(1, Math.abs(reference.loss.value)));
  pixels.dispose();
  weights.dispose();
  model.dispose();
});

function batchNorms(values: Array<Record<string, number>>): UnitNorms[] {
  return values.map((gradNorm) => ({ loss: 0, gradNorm, weightNorm: Object.fromEntries(Object.keys(gradNorm).map((k) => [k, 2])) }));
}

const twoUnits = [
  { name: 'a', tower: 'vision' as const, depth: 0, block: null, params: [] },
  { name: 'b', tower: 'vision' as const, depth: 1, block: null, params: [] },
];

test('RGN averages ratio over batches', (t) => {
  const rgn = averageRgn(batchNorms([{ a: 1, b: 4 }, { a: 3, b: 0 }]), twoUnits);
  t.is(rgn.a, 1);
  t.is(rgn.b, 1);
});

test('AutoFreeze rate from interval means', (t) => {
  // Unit a: interval means 2, 2, 2 (converged). Unit b: 1, 2, 3 (rates 1 and 0.5).
  const perBatch = batchNorms([
    { a: 1, b: 1 },
    { a: 3, b: 1 },
    { a: 2, b: 2 },
    { a: 2, b: 2 },
    { a: 2, b: 3 },
    { a: 2, b: 3 },
  ]);
  const rates = autoFreezeRates(perBatch, twoUnits, 2);
  t.is(rates.a, 0);
  t.is(rates.b, 0.75);
});

test('AutoFreeze plan freezes converged prefix', (t) => {
  const candidates = ['vision.embed', 'vision.block.0', 'vision.block.1', 'vision.block.2', 'vision.head'];
  // block.1 is below the median but follows a unit above it, so only the prefix is frozen.
  const scores = { 'vision.embed': 0.01, 'vision.block.0': 0.02, 'vision.block.1': 0.5, 'vision.block.2': 0.03, 'vision.head': 0.9 };
  const plan = choosePlan(candidates, scores, { method: 'autofreeze' });
  t.deepEqual(plan.train, ['vision.block.1', 'vision.block.2', 'vision.head', 'head']);
});

test('RGN plan takes top K', (t) => {
  const plan = choosePlan(['u0', 'u1', 'u2'], { u0: 0.3, u1: 0.1, u2: 0.2 }, { method: 'rgn', units: 2 });
  t.deepEqual(plan.train, ['u0', 'u2', 'head']);
});

test('RGN plan gives lrScale', (t) => {
  const plan = choosePlan(['u0', 'u1'], { u0: 0.4, u1: 0.1 }, { method: 'rgn', lrScale: true });
  t.deepEqual(plan.lrScale, { u0: 1, u1: 0.25 });
  t.deepEqual(plan.train, ['u0', 'u1', 'head']);
});

test('percentile matches numpy linear', (t) => {
  t.is(percentileOf([4, 1, 3, 2], 50), 2.5);
  t.is(percentileOf([1, 2, 3, 4, 5], 80), 4.2);
});

test('micro-batch gradients equal full batch', (t) => {
  const w = tf.variable(tf.tensor2d([0.5, -1, 2, 0.25], [2, 2]));
  const x = tf.tensor2d([1, 2, 3, 4, 5, 6, -1, 0, 2, 2], [5, 2]);
  const y = tf.tensor2d([1, 0, 0, 1, 1, 1, 0, 0, 2, 1], [5, 2]);
  const lossOf = (start: number, end: number) => (): tf.Scalar =>
    tf.tidy(() => tf.mean(tf.square(tf.sub(tf.matMul(x.slice([start, 0], [end - start, 2]), w), y.slice([start, 0], [end - start, 2])))) as tf.Scalar);
  const params = new Map([['w', w]]);

  const full = accumulateGradients(params, [{ loss: lossOf(0, 5), weight: 1 }]);
  const parts = accumulateGradients(params, [
    { loss: lossOf(0, 2), weight: 2 / 5 },
    { loss: lossOf(2, 4), weight: 2 / 5 },
    { loss: lossOf(4, 5), weight: 1 / 5 },
  ]);
  t.true(Math.abs(parts.loss - full.loss) < 1e-5, `loss ${parts.loss} vs ${full.loss}`);
  const expected = full.grads.get('w')!.dataSync();
  const actual = parts.grads.get('w')!.dataSync();
  expected.forEach((value, i) => t.true(Math.abs(actual[i] - value) < 1e-5, `gradient ${i}: ${actual[i]} vs ${value}`));
  disposeGradients(full.grads);
  disposeGradients(parts.grads);
  tf.dispose([w, x, y]);
});
