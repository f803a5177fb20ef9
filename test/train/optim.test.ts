import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { AdamW } from '../../lib/train/adamw.ts';
import { clipByGlobalNorm, globalNorm } from '../../lib/train/clipGrad.ts';
import { GradientBuffer } from '../../lib/train/gradientBuffer.ts';
import { bceWithLogits, positiveWeights } from '../../lib/train/loss.ts';
import { layerDecayScales, learningRateAt } from '../../lib/train/schedule.ts';
import { initBackend } from '../../lib/util/backend.ts';

test.before(async () => {
  await initBackend();
});

/** Applies AdamW updates in float64, written out as torch.optim.AdamW does them. */
function referenceAdamW(p: number[], g: number[][], lr: number, wd: number, decay: boolean): number[] {
  const [b1, b2, eps] = [0.9, 0.999, 1e-8];
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  const w = [...p];
  g.forEach((grad, i) => {
    const t = i + 1;
    for (let j = 0; j < w.length; j++) {
      if (decay) w[j] *= 1 - lr * wd;
      m[j] = b1 * m[j] + (1 - b1) * grad[j];
      v[j] = b2 * v[j] + (1 - b2) * grad[j] ** 2;
      const mHat = m[j] / (1 - b1 ** t);
      const vHat = v[j] / (1 - b2 ** t);
      w[j] -= (lr * mHat) / (Math.sqrt(vHat) + eps);
    }
  });
  return w;
}

test('adamw matches reference update', (t) => {
  const start = [0.5, -1.5, 2.0, 0.0];
  const grads = [[0.1, -0.2, 0.3, 0.0], [-0.5, 0.4, 0.1, 1.0], [0.2, 0.2, -0.7, -0.3]];
  for (const decay of [true, false]) {
    const variable = tf.variable(tf.tensor1d(start));
    const opt = new AdamW([{ name: 'w', variable, lrScale: 2, decay }], { weightDecay: 0.1 });
    for (const g of grads) {
      const gradient = tf.tensor1d(g);
      opt.applyGradients(new Map([['w', gradient]]), 0.05);
      gradient.dispose();
    }
    const expected = referenceAdamW(start, grads, 0.1, 0.1, decay);
    const actual = Array.from(variable.dataSync());
    for (let j = 0; j < expected.length; j++) t.true(Math.abs(actual[j] - expected[j]) < 1e-5, `decay=${decay} index ${j}: ${actual[j]} vs ${expected[j]}`);
    opt.dispose();
    variable.dispose();
  }
});

test('adamw keeps tensor count flat', (t) => {
  const variable = tf.variable(tf.randomNormal([64, 64]));
  const opt = new AdamW([{ name: 'w', variable, lrScale: 1, decay: true }]);
  const gradient = tf.randomNormal([64, 64]);
  opt.applyGradients(new Map([['w', gradient]]), 1e-3);
  const before = tf.memory().numTensors;
  for (let i = 0; i < 5; i++) opt.applyGradients(new Map([['w', gradient]]), 1e-3);
  t.is(tf.memory().numTensors, before);
  gradient.dispose();
  opt.dispose();
  variable.dispose();
});

test('adamw state round trip', (t) => {
  const make = () => tf.variable(tf.tensor1d([1, 2, 3]));
  const a = make();
  const b = make();
  const optA = new AdamW([{ name: 'w', variable: a, lrScale: 1, decay: true }]);
  const optB = new AdamW([{ name: 'w', variable: b, lrScale: 1, decay: true }]);
  const g1 = tf.tensor1d([0.3, -0.1, 0.2]);
  const g2 = tf.tensor1d([-0.2, 0.5, 0.1]);
  optA.applyGradients(new Map([['w', g1]]), 0.1);
  optB.applyGradients(new Map([['w', g1]]), 0.1);
  const saved = optA.getState();
  const fresh = new AdamW([{ name: 'w', variable: b, lrScale: 1, decay: true }]);
  fresh.setState(saved);
  optA.applyGradients(new Map([['w', g2]]), 0.1);
  fresh.applyGradients(new Map([['w', g2]]), 0.1);
  t.is(fresh.step, 2);
  t.deepEqual(Array.from(b.dataSync()), Array.from(a.dataSync()));
  t.throws(() => fresh.setState({ step: 1, m: {}, v: {} }), { message: /no 'm' buffer for parameter 'w'/ });
  for (const x of [optA, optB, fresh]) x.dispose();
  tf.dispose([a, b, g1, g2]);
});

test('schedule warms up then decays', (t) => {
  const cfg = { baseLr: 1e-3, warmupSteps: 10, totalSteps: 110, minLrRatio: 0.1 };
  t.true(Math.abs(learningRateAt(0, cfg) - 1e-4) < 1e-12);
  t.true(Math.abs(learningRateAt(9, cfg) - 1e-3) < 1e-12);
  t.true(Math.abs(learningRateAt(10, cfg) - 1e-3) < 1e-12);
  t.true(Math.abs(learningRateAt(60, cfg) - 0.55e-3) < 1e-12);
  t.true(Math.abs(learningRateAt(110, cfg) - 1e-4) < 1e-12);
  t.true(Math.abs(learningRateAt(500, cfg) - 1e-4) < 1e-12);
});

test('layer decay scales by depth', (t) => {
  const geometry = {
    embedDim: 32,
    vision: { imageSize: 224, patchSize: 32, width: 128, layers: 3, mlpDim: 512 },
    text: { contextLength: 77, vocabSize: 49408, width: 64, layers: 3, mlpDim: 256 },
  };
  const scales = layerDecayScales(geometry, 1, 0.5);
  t.deepEqual(scales, { 'vision.embed': 0.5 ** 4, 'vision.block.0': 0.5 ** 3, 'vision.block.1': 0.25, 'vision.head': 0.5, head: 1 });
});

test('clipping scales to max norm', (t) => {
  const grads = new Map<string, tf.Tensor>([['a', tf.tensor1d([3, 0])], ['b', tf.tensor1d([0, 4])]]);
  const norm = clipByGlobalNorm(grads, 1);
  t.true(Math.abs(norm - 5) < 1e-6);
  t.true(Math.abs(globalNorm(grads) - 1) < 1e-5);
  t.true(Math.abs(grads.get('a')!.dataSync()[0] - 0.6) < 1e-5);
  tf.dispose([...grads.values()]);
});

test('clipping leaves small gradients', (t) => {
  const grads = new Map<string, tf.Tensor>([['a', tf.tensor1d([0.3, 0.4])]]);
  const original = grads.get('a');
  t.true(Math.abs(clipByGlobalNorm(grads, 1) - 0.5) < 1e-6);
  t.is(grads.get('a'), original);
  original!.dispose();
});

test('clipping reports NaN norm', (t) => {
  const grads = new Map<string, tf.Tensor>([['a', tf.tensor1d([NaN, 1])]]);
  t.true(Number.isNaN(clipByGlobalNorm(grads, 1)));
  tf.dispose([...grads.values()]);
});

test('gradient buffer sums and clips', (t) => {
  const buffer = new GradientBuffer();
  const a1 = tf.tensor1d([1, 2]);
  const a2 = tf.tensor1d([2, 2]);
  const b = tf.tensor1d([0]);
  buffer.add('a', a1);
  buffer.add('a', a2);
  buffer.add('b', b);
  t.deepEqual(Array.from(buffer.entries().get('a')!), [3, 4]);
  t.is(buffer.clipByGlobalNorm(1), 5);
  t.true(Math.abs(buffer.globalNorm() - 1) < 1e-5);
  t.throws(() => buffer.add('a', b), { message: /Gradient of 'a' has 1 values, expected 2/ });
  tf.dispose([a1, a2, b]);
});

test('adamw accepts array gradients', (t) => {
  const fromTensor = tf.variable(tf.tensor1d([1, -1]));
  const fromArray = tf.variable(tf.tensor1d([1, -1]));
  const optTensor = new AdamW([{ name: 'w', variable: fromTensor, lrScale: 1, decay: true }]);
  const optArray = new AdamW([{ name: 'w', variable: fromArray, lrScale: 1, decay: true }]);
  const g = tf.tensor1d([0.5, -0.25]);
  optTensor.applyGradients(new Map([['w', g]]), 0.1);
  optArray.applyGradients(new Map([['w', new Float32Array([0.5, -0.25])]]), 0.1);
  t.deepEqual(Array.from(fromArray.dataSync()), Array.from(fromTensor.dataSync()));
  tf.dispose([fromTensor, fromArray, g]);
});

test('bce matches float64 formula', (t) => {
  const x = [[2.5, -1.0, 0.0], [-30, 40, 0.7]];
  const y = [[1, 0, 1], [0, 1, 0]];
  const w = [2, 1, 0.5];
  const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));
  let expected = 0;
  for (let i = 0; i < 2; i++) {
    for (let f = 0; f < 3; f++) {
      const p = Math.min(Math.max(sigmoid(x[i][f]), 1e-300), 1 - 1e-16);
      expected -= w[f] * y[i][f] * Math.log(p) + (1 - y[i][f]) * Math.log1p(-p);
    }
  }
  expected /= 6;
  const loss = bceWithLogits(tf.tensor2d(x), tf.tensor2d(y), w);
  t.true(Math.abs(loss.dataSync()[0] - expected) < 1e-5, `${loss.dataSync()[0]} vs ${expected}`);
  const unweighted = bceWithLogits(tf.tensor2d([[0]]), tf.tensor2d([[1]]));
  t.true(Math.abs(unweighted.dataSync()[0] - Math.log(2)) < 1e-6);
});

test('positive weights from label counts', (t) => {
  t.deepEqual(positiveWeights([[1, 0], [0, 0], [1, 0], [0, 0]], 2), [1, 1]);
  t.deepEqual(positiveWeights([[1, 0], [0, 0], [0, 0], [0, 0]], 2), [3, 1]);
});
