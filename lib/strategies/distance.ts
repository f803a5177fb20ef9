// Distances between two sets of feature vectors (for example the class-token activations of
// one vision block on source-domain and on target-domain images): linear-kernel maximum mean
// discrepancy (MMD) and the Frechet distance between Gaussian fits, as in FID (Heusel et al. 2017).
// All arithmetic is float64.
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import type { Features } from './cka.ts';

/**
 * Squared MMD with the linear kernel k(a, b) = a.b. The unbiased estimate (the default, from Gretton et
 * al. 2012) drops the i = j terms and can be slightly negative when the sets match; the
 * biased one equals ||mean(x) - mean(y)||^2.
 */
export function linearMmd2(x: Features, y: Features, options: { unbiased?: boolean } = {}): number {
  checkSets(x, y, 2);
  const unbiased = options.unbiased ?? true;
  const sumX = columnSums(x);
  const sumY = columnSums(y);

  const meanDot = dot(sumX, sumY) / (x.n * y.n);
  if (!unbiased) {
    return dot(sumX, sumX) / (x.n * x.n) + dot(sumY, sumY) / (y.n * y.n) - 2 * meanDot;
  }
  // sum_{i != j} x_i.x_j = ||sum_i x_i||^2 - sum_i ||x_i||^2
  const withinX = (dot(sumX, sumX) - sumOfSquares(x)) / (x.n * (x.n - 1));
  const withinY = (dot(sumY, sumY) - sumOfSquares(y)) / (y.n * (y.n - 1));
  return withinX + withinY - 2 * meanDot;
}

/** Mean and covariance (unbiased, divided by n - 1) of a set of feature vectors. */
export interface GaussianFit {
  mean: Float64Array;
  covariance: Matrix;
}

/**
 * Frechet distance between Gaussian fits of two feature sets:
 *
 *   d^2 = ||mu_x - mu_y||^2 + tr(S_x) + tr(S_y) - 2 tr((S_x^1/2 S_y S_x^1/2)^1/2)
 *
 * The last trace equals the nuclear norm of A B^T, where A and B are the centred features
 * divided by sqrt(n - 1), because both have the eigenvalues of S_x S_y. With fewer examples
 * than features this route is exact and cheaper (an n x m matrix instead of d x d), so it is
 * taken then. Otherwise the symmetric square root of S_x is used.
 */
export function frechetDistance(x: Features, y: Features): number {
  checkSets(x, y, 2);
  const a = centredScaled(x);
  const b = centredScaled(y);
  const meanGap = squaredDistance(columnMeans(x), columnMeans(y));
  const traceX = frobeniusSquared(a);
  const traceY = frobeniusSquared(b);

  const traceSqrt = Math.min(x.n, y.n) < x.d ? nuclearNorm(a.mmul(b.transpose())) : traceSqrtProduct(a.transpose().mmul(a), b.transpose().mmul(b));
  // Rounding can push the sum a hair below zero for identical sets.
  return Math.max(meanGap + traceX + traceY - 2 * traceSqrt, 0);
}

/** tr((S_x^1/2 S_y S_x^1/2)^1/2) through the symmetric square root of S_x. */
export function traceSqrtProduct(covX: Matrix, covY: Matrix): number {
  const rootX = symmetricSqrt(covX);
  const middle = rootX.mmul(covY).mmul(rootX);
  return eigenvaluesSymmetric(symmetrise(middle)).reduce((s, v) => s + Math.sqrt(Math.max(v, 0)), 0);
}

/**
 * Square root of a symmetric positive semi-definite matrix: V diag(sqrt(max(lambda, 0))) V^T
 * from its eigendecomposition. Negative eigenvalues from rounding are clipped to zero.
 */
export function symmetricSqrt(m: Matrix): Matrix {
  const evd = new EigenvalueDecomposition(symmetrise(m), { assumeSymmetric: true });
  const vectors = evd.eigenvectorMatrix;
  const roots = evd.realEigenvalues.map((v) => Math.sqrt(Math.max(v, 0)));
  const scaled = vectors.clone();
  for (let j = 0; j < roots.length; j++) for (let i = 0; i < scaled.rows; i++) scaled.set(i, j, scaled.get(i, j) * roots[j]);
  return scaled.mmul(vectors.transpose());
}

export function gaussianFit(x: Features): GaussianFit {
  const a = centredScaled(x);
  return { mean: columnMeans(x), covariance: a.transpose().mmul(a) };
}

function eigenvaluesSymmetric(m: Matrix): number[] {
  return new EigenvalueDecomposition(m, { assumeSymmetric: true }).realEigenvalues;
}

/** Sum of singular values: sum of sqrt(eigenvalues of C C^T). */
function nuclearNorm(c: Matrix): number {
  const gram = c.rows <= c.columns ? c.mmul(c.transpose()) : c.transpose().mmul(c);
  return eigenvaluesSymmetric(symmetrise(gram)).reduce((s, v) => s + Math.sqrt(Math.max(v, 0)), 0);
}

/** (M + M^T) / 2, removing the asymmetry that rounding leaves in products such as R S R. */
function symmetrise(m: Matrix): Matrix {
  return m.clone().add(m.transpose()).mul(0.5);
}

/** Rows centred by the column means and divided by sqrt(n - 1), so A^T A is the covariance. */
function centredScaled(x: Features): Matrix {
  const means = columnMeans(x);
  const scale = 1 / Math.sqrt(x.n - 1);
  const out = new Matrix(x.n, x.d);
  for (let i = 0; i < x.n; i++) for (let j = 0; j < x.d; j++) out.set(i, j, (x.data[i * x.d + j] - means[j]) * scale);
  return out;
}

function columnSums(x: Features): Float64Array {
  const sums = new Float64Array(x.d);
  for (let i = 0; i < x.n; i++) for (let j = 0; j < x.d; j++) sums[j] += x.data[i * x.d + j];
  return sums;
}

function columnMeans(x: Features): Float64Array {
  return columnSums(x).map((s) => s / x.n);
}

function sumOfSquares(x: Features): number {
  let s = 0;
  for (let i = 0; i < x.data.length; i++) s += x.data[i] * x.data[i];
  return s;
}

function frobeniusSquared(m: Matrix): number {
  let s = 0;
  for (let i = 0; i < m.rows; i++) for (let j = 0; j < m.columns; j++) s += m.get(i, j) ** 2;
  return s;
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function squaredDistance(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return s;
}

function checkSets(x: Features, y: Features, minExamples: number): void {
  if (x.d !== y.d) throw new Error(`Feature sets differ in width: ${x.d} and ${y.d} features.`);
  if (x.n < minExamples || y.n < minExamples) {
    throw new Error(`A distance between feature sets needs at least ${minExamples} examples in each, got ${x.n} and ${y.n}.`);
  }
}
