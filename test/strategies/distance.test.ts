import test from 'ava';
import { Matrix } from 'ml-matrix';
import { features, type Features } from '../../lib/strategies/cka.ts';
import { frechetDistance, gaussianFit, linearMmd2, symmetricSqrt, traceSqrtProduct } from '../../lib/strategies/distance.ts';
import { createRng, randomNormal, type Rng } from '../../lib/util/rng.ts';

/** n samples with independent columns: column j has mean means[j] and standard deviation stds[j]. */
function gaussianSample(rng: Rng, n: number, means: number[], stds: number[]): Features {
  const d = means.length;
  return features(Float64Array.from({ length: n * d }, (_, k) => means[k % d] + stds[k % d] * randomNormal(rng)), n, d);
}

test('linear MMD biased is mean gap', (t) => {
  const rng = createRng(1);
  const x = gaussianSample(rng, 20, [0, 1, 2], [1, 1, 1]);
  const y = gaussianSample(rng, 30, [1, 1, 0], [2, 1, 1]);
  const mean = (f: Features, j: number): number => {
    let s = 0;
    for (let i = 0; i < f.n; i++) s += f.data[i * f.d + j];
    return s / f.n;
  };
  let expected = 0;
  for (let j = 0; j < 3; j++) expected += (mean(x, j) - mean(y, j)) ** 2;
  t.true(Math.abs(linearMmd2(x, y, { unbiased: false }) - expected) < 1e-10);
});

test('linear MMD unbiased near zero for same law', (t) => {
  const rng = createRng(2);
  const x = gaussianSample(rng, 2000, [3, -1], [1, 2]);
  const y = gaussianSample(rng, 2000, [3, -1], [1, 2]);
  t.true(Math.abs(linearMmd2(x, y)) < 0.01, `${linearMmd2(x, y)}`);
});

test('linear MMD unbiased detects mean shift', (t) => {
  const rng = createRng(3);
  // The population value is ||(1, 0)||^2 = 1; the estimate's standard deviation is about 0.02.
  const x = gaussianSample(rng, 20000, [0, 0], [1, 1]);
  const y = gaussianSample(rng, 20000, [1, 0], [1, 1]);
  t.true(Math.abs(linearMmd2(x, y) - 1) < 0.08, `${linearMmd2(x, y)}`);
});

test('Frechet distance of identical sets is 0', (t) => {
  const x = gaussianSample(createRng(4), 50, [1, 2, 3, 4], [1, 2, 3, 4]);
  t.true(frechetDistance(x, x) < 1e-8);
});

test('Frechet distance matches diagonal closed form', (t) => {
  // For diagonal covariances the distance is sum_j (mu_x - mu_y)^2 + (sigma_x - sigma_y)^2.
  const rng = createRng(5);
  const x = gaussianSample(rng, 4000, [0, 1, 0], [1, 2, 0.5]);
  const y = gaussianSample(rng, 4000, [1, 1, 0], [3, 2, 1.5]);
  const fitX = gaussianFit(x);
  const fitY = gaussianFit(y);
  // Use the sample moments so the check is exact up to the sample's off-diagonal covariance.
  let expected = 0;
  for (let j = 0; j < 3; j++) {
    expected += (fitX.mean[j] - fitY.mean[j]) ** 2;
    expected += (Math.sqrt(fitX.covariance.get(j, j)) - Math.sqrt(fitY.covariance.get(j, j))) ** 2;
  }
  t.true(Math.abs(frechetDistance(x, y) - expected) < 0.02 * expected, `${frechetDistance(x, y)} vs ${expected}`);
});

test('Frechet routes agree when n < d', (t) => {
  // Fewer examples than features takes the n x m route; compare with the d x d square root.
  const rng = createRng(6);
  const d = 12;
  const x = gaussianSample(rng, 7, Array(d).fill(0), Array(d).fill(1));
  const y = gaussianSample(rng, 9, Array(d).fill(0.5), Array(d).fill(2));
  const fitX = gaussianFit(x);
  const fitY = gaussianFit(y);
  let meanGap = 0;
  for (let j = 0; j < d; j++) meanGap += (fitX.mean[j] - fitY.mean[j]) ** 2;
  const viaSquareRoot = meanGap + fitX.covariance.trace() + fitY.covariance.trace() - 2 * traceSqrtProduct(fitX.covariance, fitY.covariance);
  t.true(Math.abs(frechetDistance(x, y) - viaSquareRoot) < 1e-8 * viaSquareRoot, `${frechetDistance(x, y)} vs ${viaSquareRoot}`);
});

test('symmetric square root squares back', (t) => {
  const rng = createRng(7);
  const a = new Matrix(Array.from({ length: 5 }, () => Array.from({ length: 5 }, () => randomNormal(rng))));
  const spd = a.mmul(a.transpose());
  const root = symmetricSqrt(spd);
  const back = root.mmul(root);
  let maxError = 0;
  for (let i = 0; i < 5; i++) for (let j = 0; j < 5; j++) maxError = Math.max(maxError, Math.abs(back.get(i, j) - spd.get(i, j)));
  t.true(maxError < 1e-9, `max error ${maxError}`);
});

test('distance rejects width mismatch', (t) => {
  const rng = createRng(8);
  t.throws(() => frechetDistance(gaussianSample(rng, 5, [0, 0], [1, 1]), gaussianSample(rng, 5, [0], [1])), { message: /differ in width: 2 and 1/ });
});
