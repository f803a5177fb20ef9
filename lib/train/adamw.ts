// AdamW (Loshchilov and Hutter, "Decoupled Weight Decay Regularization", ICLR 2019), written
// for a small heap. The moments m and v live in JavaScript memory, outside the backend's
// heap, and every parameter is updated in place inside its own tf.tidy, so the backend holds
// only one parameter's moments and temporaries at a time. With TF.js 4.22, the stock
// tf.train.adam ran out of memory on the 4 GiB wasm heap at batch 2 when fully fine-tuning
// the ViT-B/32 image tower.
//
// The update matches torch.optim.AdamW (PyTorch 2.x, amsgrad off):
//   p <- p * (1 - lr * weightDecay)                       (decoupled decay, only where enabled)
//   m <- beta1 * m + (1 - beta1) * g
//   v <- beta2 * v + (1 - beta2) * g^2
//   p <- p - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
import * as tf from '@tensorflow/tfjs';

export interface AdamWParam {
  /** Canonical parameter name; optimiser state is saved and restored by this name. */
  name: string;
  variable: tf.Variable;
  /** Multiplier on the step's learning rate (per-unit learning rate, layer-wise decay). */
  lrScale: number;
  /** False for gains, biases, embeddings and the logit scale. */
  decay: boolean;
}

export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
}

/** Optimiser state as plain arrays, for checkpoints. getState returns the live buffers, not copies. */
export interface AdamWState {
  step: number;
  m: Record<string, Float32Array>;
  v: Record<string, Float32Array>;
}

export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  /** Number of updates applied so far (t in the bias corrections). */
  step = 0;

  private readonly params: AdamWParam[];
  private readonly m = new Map<string, Float32Array>();
  private readonly v = new Map<string, Float32Array>();

  constructor(params: AdamWParam[], options: AdamWOptions = {}) {
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0.01;
    this.params = params;
    for (const p of params) {
      if (this.m.has(p.name)) throw new Error(`Parameter '${p.name}' was given to AdamW twice.`);
      this.m.set(p.name, new Float32Array(p.variable.size));
      this.v.set(p.name, new Float32Array(p.variable.size));
    }
  }

  /**
   * Applies one update with base learning rate `lr`. `grads` maps parameter names to gradients
   * of the variables' sizes, as tensors or flat arrays; a parameter without a gradient is left
   * unchanged (moments too).
   */
  applyGradients(grads: Map<string, tf.Tensor | Float32Array>, lr: number): void {
    this.step += 1;
    const t = this.step;
    const biasCorrection1 = 1 - this.beta1 ** t;
    const biasCorrection2 = 1 - this.beta2 ** t;

    for (const p of this.params) {
      const gradient = grads.get(p.name);
      if (!gradient) continue;
      const mBuffer = this.m.get(p.name)!;
      const vBuffer = this.v.get(p.name)!;
      const stepLr = lr * p.lrScale;

      tf.tidy(() => {
        const shape = p.variable.shape;
        const g = gradient instanceof Float32Array ? tf.tensor(gradient, shape) : gradient;
        const m = tf.tensor(mBuffer, shape);
        const v = tf.tensor(vBuffer, shape);
        const mNext = m.mul(this.beta1).add(g.mul(1 - this.beta1));
        const vNext = v.mul(this.beta2).add(g.square().mul(1 - this.beta2));
        mBuffer.set(mNext.dataSync() as Float32Array);
        vBuffer.set(vNext.dataSync() as Float32Array);

        let weights: tf.Tensor = p.variable;
        if (p.decay && this.weightDecay > 0) weights = weights.mul(1 - stepLr * this.weightDecay);
        const denominator = vNext.div(biasCorrection2).sqrt().add(this.eps);
        const update = mNext.div(denominator).mul(stepLr / biasCorrection1);
        p.variable.assign(weights.sub(update));
      });
    }
  }

  getState(): AdamWState {
    const m: Record<string, Float32Array> = {};
    const v: Record<string, Float32Array> = {};
    for (const p of this.params) {
      m[p.name] = this.m.get(p.name)!;
      v[p.name] = this.v.get(p.name)!;
    }
    return { step: this.step, m, v };
  }

  /** Restores moments and the step count saved by `getState`; names and sizes must match. */
  setState(state: AdamWState): void {
    for (const p of this.params) {
      for (const [kind, buffers, target] of [['m', state.m, this.m], ['v', state.v, this.v]] as const) {
        const data = buffers[p.name];
        const buffer = target.get(p.name)!;
        if (!data) throw new Error(`Optimiser state has no '${kind}' buffer for parameter '${p.name}'; the checkpoint does not match this freeze plan.`);
        if (data.length !== buffer.length) {
          throw new Error(`Optimiser state for '${p.name}' has ${data.length} values, expected ${buffer.length}; the checkpoint does not match this model.`);
        }
        buffer.set(data);
      }
    }
    this.step = state.step;
  }

  dispose(): void {
    this.m.clear();
    this.v.clear();
  }
}
