import test from 'ava';
import { features, linearCka, linearGram, MinibatchCka, minibatchCka, unbiasedHsic, type Features } from '../../lib/strategies/cka.ts';
import { createRng, randomNormal, type Rng } from '../../lib/util/rng.ts';

function randomFeatures(rng: Rng, n: number, d: number): Features {
  return features(Float64Array.from({ length: n * d }, () => randomNormal(rng)), n, d);
}

/** y = x W + noise: a representation related to x but not identical. */
function relatedFeatures(rng: Rng, x: Features, d: number, noise: number): Features {
  const w = Float64Array.from({ length: x.d * d }, () => randomNormal(rng));
  const out = new Float64Array(x.n * d);
  for (let i = 0; i < x.n; i++) {
    for (let j = 0; j < d; j++) {
      let s = 0;
      for (let c = 0; c < x.d; c++) s += x.data[i * x.d + c] * w[c * d + j];
      out[i * d + j] = s + noise * randomNormal(rng);
    }
  }
  return features(out, x.n, d);
}

/** Builds a random orthogonal d x d matrix by Gram-Schmidt on Gaussian columns. */
function randomOrthogonal(rng: Rng, d: number): Float64Array {
  const q = Float64Array.from({ length: d * d }, () => randomNormal(rng));
  for (let j = 0; j < d; j++) {
    for (let p = 0; p < j; p++) {
      let proj = 0;
      for (let i = 0; i < d; i++) proj += q[i * d + j] * q[i * d + p];
      for (let i = 0; i < d; i++) q[i * d + j] -= proj * q[i * d + p];
    }
    let norm = 0;
    for (let i = 0; i < d; i++) norm += q[i * d + j] ** 2;
    for (let i = 0; i < d; i++) q[i * d + j] /= Math.sqrt(norm);
  }
  return q;
}

function multiply(x: Features, m: Float64Array, scale = 1): Features {
  const out = new Float64Array(x.n * x.d);
  for (let i = 0; i < x.n; i++) {
    for (let j = 0; j < x.d; j++) {
      let s = 0;
      for (let c = 0; c < x.d; c++) s += x.data[i * x.d + c] * m[c * x.d + j];
      out[i * x.d + j] = scale * s;
    }
  }
  return features(out, x.n, x.d);
}

/** CKA through explicit centring matrices: tr(K H L H) / sqrt(tr(K H K H) tr(L H L H)). */
function referenceCka(x: Features, y: Features): number {
  const n = x.n;
  const centred = (gram: Float64Array): number[][] => {
    const h = (i: number, j: number): number => (i === j ? 1 : 0) - 1 / n;
    const kh: number[][] = [];
    for (let i = 0; i < n; i++) {
      kh.push([]);
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let c = 0; c < n; c++) s += gram[i * n + c] * h(c, j);
        kh[i].push(s);
      }
    }
    return kh;
  };
  const kh = centred(linearGram(x));
  const lh = centred(linearGram(y));
  const traceProduct = (a: number[][], b: number[][]): number => {
    let s = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) s += a[i][j] * b[j][i];
    return s;
  };
  return traceProduct(kh, lh) / Math.sqrt(traceProduct(kh, kh) * traceProduct(lh, lh));
}

/** Unbiased HSIC as the U-statistic over ordered distinct 4-tuples (Song et al. 2012). */
function referenceUnbiasedHsic(k: Float64Array, l: Float64Array, n: number): number {
  let s = 0;
  let count = 0;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++)
      for (let q = 0; q < n; q++)
        for (let r = 0; r < n; r++) {
          if (new Set([i, j, q, r]).size < 4) continue;
          s += k[i * n + j] * (l[i * n + j] + l[q * n + r] - 2 * l[i * n + q]);
          count += 1;
        }
  return s / count;
}

test('linear CKA of identical inputs is 1', (t) => {
  const x = randomFeatures(createRng(1), 40, 12);
  t.true(Math.abs(linearCka(x, x) - 1) < 1e-12);
});

test('linear CKA invariant to orthogonal transform', (t) => {
  const rng = createRng(2);
  const x = randomFeatures(rng, 50, 10);
  const y = relatedFeatures(rng, x, 10, 1.5);
  const rotated = multiply(y, randomOrthogonal(rng, 10));
  const before = linearCka(x, y);
  t.true(before > 0.1 && before < 0.99, `CKA ${before} should be strictly between 0 and 1 for this case`);
  t.true(Math.abs(linearCka(x, rotated) - before) < 1e-10);
});

test('linear CKA invariant to isotropic scaling', (t) => {
  const rng = createRng(3);
  const x = randomFeatures(rng, 30, 8);
  const y = relatedFeatures(rng, x, 5, 1);
  const identity = Float64Array.from({ length: 64 }, (_, i) => (i % 9 === 0 ? 1 : 0));
  t.true(Math.abs(linearCka(multiply(x, identity, 37.5), y) - linearCka(x, y)) < 1e-12);
});

test('linear CKA matches float64 reference', (t) => {
  const rng = createRng(4);
  const x = randomFeatures(rng, 9, 4);
  const y = relatedFeatures(rng, x, 3, 0.8);
  // Float32 input exercises the float64 promotion inside linearCka.
  const x32 = features(Float32Array.from(x.data), x.n, x.d);
  const expected = referenceCka(features(Float32Array.from(x.data), x.n, x.d), y);
  t.true(Math.abs(linearCka(x32, y) - expected) < 1e-12, `${linearCka(x32, y)} vs ${expected}`);
});

test('linear CKA of unrelated inputs is small', (t) => {
  const rng = createRng(5);
  const value = linearCka(randomFeatures(rng, 2000, 4), randomFeatures(rng, 2000, 4));
  t.true(value < 0.02, `CKA ${value}`);
});

test('unbiased HSIC matches U-statistic', (t) => {
  const rng = createRng(6);
  const x = randomFeatures(rng, 7, 3);
  const y = relatedFeatures(rng, x, 2, 1);
  const k = linearGram(x);
  const l = linearGram(y);
  const expected = referenceUnbiasedHsic(k, l, 7);
  t.true(Math.abs(unbiasedHsic(k, l, 7) - expected) < 1e-9 * Math.max(1, Math.abs(expected)), `${unbiasedHsic(k, l, 7)} vs ${expected}`);
});

test('minibatch CKA converges to full', (t) => {
  const rng = createRng(7);
  const x = randomFeatures(rng, 3000, 6);
  const y = relatedFeatures(rng, x, 4, 2);
  const full = linearCka(x, y);
  const small = minibatchCka(x, y, 300);
  t.true(Math.abs(small - full) < 0.02, `minibatch ${small} vs full ${full}`);
});

test('minibatch CKA unbiased in batch size', (t) => {
  // The biased full-data estimate computed per small batch drifts upward; the unbiased one does not.
  const rng = createRng(8);
  const x = randomFeatures(rng, 3000, 6);
  const y = randomFeatures(rng, 3000, 6);
  const perBatch = minibatchCka(x, y, 20);
  t.true(Math.abs(perBatch) < 0.05, `unrelated inputs, batch 20: ${perBatch}`);
});

test('minibatch CKA accumulator counts examples', (t) => {
  const rng = createRng(9);
  const acc = new MinibatchCka();
  t.true(Number.isNaN(acc.value()));
  const x = randomFeatures(rng, 10, 3);
  acc.update(x, x);
  t.is(acc.examples, 10);
  t.true(Math.abs(acc.value() - 1) < 1e-12);
});

test('CKA rejects mismatched rows', (t) => {
  const rng = createRng(10);
  t.throws(() => linearCka(randomFeatures(rng, 5, 2), randomFeatures(rng, 6, 2)), { message: /same examples.*5 and 6 rows/ });
});
