// Linear centered kernel alignment (CKA) between two representations of the same examples.
//
//   CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) * HSIC(L, L)),  K = X X^T, L = Y Y^T
//
// `linearCka` is the full-data estimate of Kornblith et al. 2019 ("Similarity of Neural Network
// Representations Revisited"), computed in feature space as ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F
// ||Yc^T Yc||_F) with column-centred Xc, Yc. `MinibatchCka` is the estimator of Nguyen, Raghu
// and Kornblith 2021 ("Do Wide and Deep Networks Learn the Same Things?"): the unbiased HSIC
// estimator of Song et al. 2012 averaged over minibatches, which needs memory for one
// minibatch only and is not biased by the minibatch size.
// All arithmetic is float64 whatever the input precision.

/** A row-major matrix of n examples by d features. */
export interface Features {
  n: number;
  d: number;
  data: ArrayLike<number>;
}

export function features(data: ArrayLike<number>, n: number, d: number): Features {
  if (data.length !== n * d) {
    throw new Error(`Feature matrix has ${data.length} values, expected n*d = ${n}*${d} = ${n * d}.`);
  }
  return { n, d, data };
}

/** Full-data linear CKA in [0, 1]. Returns 0 when either representation is constant across examples. */
export function linearCka(x: Features, y: Features): number {
  checkPair(x, y, 2);
  const xc = centreColumns(x);
  const yc = centreColumns(y);

  const xy = frobeniusSquaredOfCross(yc, y.d, xc, x.d, x.n);
  const xx = Math.sqrt(frobeniusSquaredOfCross(xc, x.d, xc, x.d, x.n));
  const yy = Math.sqrt(frobeniusSquaredOfCross(yc, y.d, yc, y.d, y.n));
  if (xx === 0 || yy === 0) return 0;
  return xy / (xx * yy);
}

/**
 * Unbiased HSIC estimator (Song et al. 2012, "Feature Selection via Dependence Maximization") of two n-by-n Gram matrices with a
 * linear kernel. Needs n >= 4.
 *
 *   HSIC_1 = [tr(K~ L~) + (1'K~1)(1'L~1) / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))
 *
 * where K~, L~ are the Gram matrices with their diagonals set to zero.
 */
export function unbiasedHsic(k: Float64Array, l: Float64Array, n: number): number {
  if (n < 4) throw new Error(`The unbiased HSIC estimator needs at least 4 examples per minibatch, got ${n}.`);

  let trace = 0;
  let sumK = 0;
  let sumL = 0;
  let crossSum = 0;
  const rowL = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) if (i !== j) s += l[i * n + j];
    rowL[i] = s;
  }
  for (let i = 0; i < n; i++) {
    let rowK = 0;
    for (let j = 0; j < n; j++) {
      if (i === j) continue;
      const kij = k[i * n + j];
      trace += kij * l[j * n + i];
      rowK += kij;
      sumL += l[i * n + j];
    }
    sumK += rowK;
    // 1'K~L~1 = sum_j (K~1)_j (L~1)_j because both matrices are symmetric.
    crossSum += rowK * rowL[i];
  }
  return (trace + (sumK * sumL) / ((n - 1) * (n - 2)) - (2 / (n - 2)) * crossSum) / (n * (n - 3));
}

/**
 * Accumulates minibatch CKA: feed aligned minibatches (the same examples in the same order
 * through both representations) with `update`, then read `value()`.
 */
export class MinibatchCka {
  private hsicXy = 0;
  private hsicXx = 0;
  private hsicYy = 0;
  private batches = 0;
  examples = 0;

  update(x: Features, y: Features): void {
    checkPair(x, y, 4);
    const k = linearGram(x);
    const l = linearGram(y);
    this.hsicXy += unbiasedHsic(k, l, x.n);
    this.hsicXx += unbiasedHsic(k, k, x.n);
    this.hsicYy += unbiasedHsic(l, l, x.n);
    this.batches += 1;
    this.examples += x.n;
  }

  /** CKA from the HSIC means; NaN before any minibatch, 0 when a representation is constant. */
  value(): number {
    if (this.batches === 0) return Number.NaN;
    // The unbiased HSIC(K, K) can be slightly negative on tiny batches; clamp to keep sqrt real.
    const denominator = Math.sqrt(Math.max(this.hsicXx, 0) * Math.max(this.hsicYy, 0));
    if (denominator === 0) return 0;
    return this.hsicXy / denominator;
  }
}

/** Minibatch CKA over whole matrices split into consecutive minibatches of `batchSize` rows; a remainder under 4 rows is dropped. */
export function minibatchCka(x: Features, y: Features, batchSize: number): number {
  checkPair(x, y, 4);
  const acc = new MinibatchCka();
  for (let start = 0; start + 4 <= x.n; start += batchSize) {
    const end = Math.min(start + batchSize, x.n);
    acc.update(sliceRows(x, start, end), sliceRows(y, start, end));
  }
  return acc.value();
}

export function sliceRows(x: Features, start: number, end: number): Features {
  const data = new Float64Array((end - start) * x.d);
  for (let i = start; i < end; i++) for (let j = 0; j < x.d; j++) data[(i - start) * x.d + j] = x.data[i * x.d + j];
  return { n: end - start, d: x.d, data };
}

/** Returns the n-by-n linear Gram matrix X X^T in float64. */
export function linearGram(x: Features): Float64Array {
  const { n, d, data } = x;
  const rows = toFloat64(data);
  const gram = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      let s = 0;
      for (let c = 0; c < d; c++) s += rows[i * d + c] * rows[j * d + c];
      gram[i * n + j] = s;
      gram[j * n + i] = s;
    }
  }
  return gram;
}

function checkPair(x: Features, y: Features, minExamples: number): void {
  if (x.n !== y.n) {
    throw new Error(`CKA needs the same examples in both representations, got ${x.n} and ${y.n} rows.`);
  }
  if (x.n < minExamples) throw new Error(`CKA needs at least ${minExamples} examples, got ${x.n}.`);
}

function toFloat64(data: ArrayLike<number>): Float64Array {
  return data instanceof Float64Array ? data : Float64Array.from(data);
}

function centreColumns(x: Features): Float64Array {
  const out = Float64Array.from(x.data);
  for (let c = 0; c < x.d; c++) {
    let mean = 0;
    for (let i = 0; i < x.n; i++) mean += out[i * x.d + c];
    mean /= x.n;
    for (let i = 0; i < x.n; i++) out[i * x.d + c] -= mean;
  }
  return out;
}

/** ||A^T B||_F^2 for row-major A (n x da) and B (n x db). */
function frobeniusSquaredOfCross(a: Float64Array, da: number, b: Float64Array, db: number, n: number): number {
  const cross = new Float64Array(da * db);
  for (let i = 0; i < n; i++) {
    for (let p = 0; p < da; p++) {
      const aip = a[i * da + p];
      if (aip === 0) continue;
      const offset = p * db;
      for (let q = 0; q < db; q++) cross[offset + q] += aip * b[i * db + q];
    }
  }
  let s = 0;
  for (let i = 0; i < cross.length; i++) s += cross[i] * cross[i];
  return s;
}
