// Surrogate model over freeze masks: Bayesian ridge regression of validation mean AUROC on
// additive per-unit effects, optional pairwise interactions, one offset per truncation depth
// and one offset per successive-halving budget. Its predictive mean plus `exploration` times
// its predictive standard deviation (an upper confidence bound) ranks the masks to try next.
import { Matrix, inverse } from 'ml-matrix';

/** A point in the search space: which units train (a 0/1 string over the candidate units) and the truncation depth. */
export interface MaskConfig {
  mask: string;
  truncate: number;
}

export interface Observation extends MaskConfig {
  budget: number;
  value: number;
}

export interface SurrogateOptions {
  /** Include a feature for every pair of trained units (default true). */
  interactions?: boolean;
  /** Ridge penalty on every coefficient but the intercept (default 1, a prior of unit-scale effects on 0/1 features). */
  ridge?: number;
}

export class RidgeSurrogate {
  private readonly interactions: boolean;
  private readonly ridge: number;
  private truncations: number[] = [];
  private budgets: number[] = [];
  private weights: Float64Array | null = null;
  private posterior: Matrix | null = null;
  private noiseVariance = 0;
  private offset = 0;

  constructor(
    private readonly unitCount: number,
    options: SurrogateOptions = {},
  ) {
    this.interactions = options.interactions ?? true;
    this.ridge = options.ridge ?? 1;
  }

  /** Fits the model to finished trials; `observations` with a non-finite value are skipped. */
  fit(observations: Observation[]): void {
    const finite = observations.filter((o) => Number.isFinite(o.value));
    if (finite.length === 0) throw new Error('The surrogate needs at least one finished trial with a finite validation AUROC.');
    this.truncations = [...new Set(finite.map((o) => o.truncate))].sort((a, b) => a - b);
    this.budgets = [...new Set(finite.map((o) => o.budget))].sort((a, b) => a - b);

    // Centre the targets so the ridge prior shrinks towards the mean, not towards zero.
    this.offset = finite.reduce((s, o) => s + o.value, 0) / finite.length;
    const x = new Matrix(finite.map((o) => Array.from(this.featuresOf(o, o.budget))));
    const y = Matrix.columnVector(finite.map((o) => o.value - this.offset));

    // Posterior covariance (up to the noise variance) and mean of the ridge coefficients.
    const xtx = x.transpose().mmul(x);
    // The intercept (feature 0) is not penalised.
    for (let i = 1; i < xtx.rows; i++) xtx.set(i, i, xtx.get(i, i) + this.ridge);
    this.posterior = inverse(xtx);
    const w = this.posterior.mmul(x.transpose()).mmul(y);
    this.weights = Float64Array.from(w.getColumn(0));

    // Noise variance from the residuals, floored so a perfect fit still explores.
    let residual = 0;
    for (let i = 0; i < finite.length; i++) residual += (y.get(i, 0) - dot(this.weights, x.getRow(i))) ** 2;
    const dof = Math.max(finite.length - 1, 1);
    this.noiseVariance = Math.max(residual / dof, 1e-6);
  }

  /** Predictive mean and standard deviation of the value of `config` at `budget` (the largest fitted budget when omitted). */
  predict(config: MaskConfig, budget?: number): { mean: number; std: number } {
    if (!this.weights || !this.posterior) throw new Error('Call fit() before predict().');
    const f = this.featuresOf(config, budget ?? this.budgets[this.budgets.length - 1]);
    const mean = this.offset + dot(this.weights, Array.from(f));
    const column = Matrix.columnVector(Array.from(f));
    const variance = this.noiseVariance * column.transpose().mmul(this.posterior).mmul(column).get(0, 0);
    return { mean, std: Math.sqrt(Math.max(variance, 0)) };
  }

  /** Upper confidence bound: mean + exploration * std. */
  acquisition(config: MaskConfig, exploration: number, budget?: number): number {
    const { mean, std } = this.predict(config, budget);
    return mean + exploration * std;
  }

  /**
   * Returns the main effect of training each unit: the predicted value with the unit trained minus
   * without it, averaged over `configs` (for example every observed configuration), so that
   * interaction terms are folded in rather than left out.
   */
  unitEffects(configs: MaskConfig[]): number[] {
    if (!this.weights) throw new Error('Call fit() before unitEffects().');
    const effects = new Array<number>(this.unitCount).fill(0);
    for (const config of configs) {
      for (let i = 0; i < this.unitCount; i++) {
        const on = { mask: withBit(config.mask, i, '1'), truncate: config.truncate };
        const off = { mask: withBit(config.mask, i, '0'), truncate: config.truncate };
        effects[i] += this.predict(on).mean - this.predict(off).mean;
      }
    }
    return effects.map((e) => e / Math.max(configs.length, 1));
  }

  /**
   * Feature vector: [1 (intercept), m_1..m_N, m_i m_j for i < j (with interactions), one indicator per truncation
   * depth after the first, one indicator per budget after the smallest]. Unseen depths and budgets
   * get no indicator, so they are predicted like the first one.
   */
  private featuresOf(config: MaskConfig, budget: number): Float64Array {
    if (config.mask.length !== this.unitCount) {
      throw new Error(`Mask '${config.mask}' has ${config.mask.length} units, expected ${this.unitCount}.`);
    }
    const n = this.unitCount;
    const pairCount = this.interactions ? (n * (n - 1)) / 2 : 0;
    const f = new Float64Array(1 + n + pairCount + Math.max(this.truncations.length - 1, 0) + Math.max(this.budgets.length - 1, 0));
    f[0] = 1;
    let k = 1;
    for (let i = 0; i < n; i++) f[k++] = config.mask[i] === '1' ? 1 : 0;
    if (this.interactions) {
      for (let i = 1; i <= n; i++) for (let j = i + 1; j <= n; j++) f[k++] = f[i] * f[j];
    }
    for (let t = 1; t < this.truncations.length; t++) f[k++] = config.truncate === this.truncations[t] ? 1 : 0;
    for (let b = 1; b < this.budgets.length; b++) f[k++] = budget === this.budgets[b] ? 1 : 0;
    return f;
  }
}

function withBit(mask: string, index: number, bit: '0' | '1'): string {
  return mask.slice(0, index) + bit + mask.slice(index + 1);
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}
