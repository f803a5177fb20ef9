// Times formulations of the multi-head attention core (scores, softmax, weighted values;
// forward and backward) on the current TF.js backend at ViT-B/32 sizes.
// Run: npx tsx bench/attention.ts [batch]   (CLIPFREEZE_BACKEND selects the backend)
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/util/backend.ts';

const B = Number(process.argv[2] ?? 8);
const T = 50;
const W = 768;
const H = 12;
const d = W / H;
const scale = 1 / Math.sqrt(d);

type Core = (qkv: tf.Tensor2D) => tf.Tensor2D;

/** Splits heads with a rank-5 transpose to [3, B, H, T, d] and uses transposeB for QK^T. */
const flags: Core = (qkv) => {
  const [q, k, v] = tf.unstack(tf.transpose(tf.reshape(qkv, [B, T, 3, H, d]), [2, 0, 3, 1, 4])) as tf.Tensor4D[];
  const probs = tf.softmax(tf.matMul(tf.mul(q, scale), k, false, true));
  return tf.reshape(tf.transpose(tf.matMul(probs, v), [0, 2, 1, 3]), [B * T, W]) as tf.Tensor2D;
};

/** Like `flags`, but transposes k explicitly so both batched matMuls run without flags. */
const explicitTranspose: Core = (qkv) => {
  const [q, k, v] = tf.unstack(tf.transpose(tf.reshape(qkv, [B, T, 3, H, d]), [2, 0, 3, 1, 4])) as tf.Tensor4D[];
  const kT = tf.transpose(k, [0, 1, 3, 2]);
  const probs = tf.softmax(tf.matMul(tf.mul(q, scale), kT));
  return tf.reshape(tf.transpose(tf.matMul(probs, v), [0, 2, 1, 3]), [B * T, W]) as tf.Tensor2D;
};

/** Splits q, k, v by columns and transposes k directly to [B, H, d, T] (rank-4 transposes only). */
const kFirst: Core = (qkv) => {
  const [qPart, kPart, vPart] = tf.split(qkv, 3, 1);
  const heads = (x: tf.Tensor, perm: number[]) => tf.transpose(tf.reshape(x, [B, T, H, d]), perm);
  const q = heads(qPart, [0, 2, 1, 3]);
  const kT = heads(kPart, [0, 2, 3, 1]);
  const v = heads(vPart, [0, 2, 1, 3]);
  const probs = tf.softmax(tf.matMul(tf.mul(q, scale), kT as tf.Tensor4D));
  return tf.reshape(tf.transpose(tf.matMul(probs as tf.Tensor4D, v as tf.Tensor4D), [0, 2, 1, 3]), [B * T, W]) as tf.Tensor2D;
};

/** Batched matMul whose gradient transposes explicitly, like layers.ts matMulFast. */
const batchedMatMul = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [a, b, save] = args as [tf.Tensor4D, tf.Tensor4D, tf.GradSaveFunc];
  save([a, b]);
  return {
    value: tf.matMul(a, b),
    gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => {
      const [sa, sb] = saved as tf.Tensor4D[];
      return [tf.matMul(dy, tf.transpose(sb, [0, 1, 3, 2])), tf.matMul(tf.transpose(sa, [0, 1, 3, 2]), dy)];
    },
  };
}) as (a: tf.Tensor4D, b: tf.Tensor4D) => tf.Tensor4D;

/** Runs kFirst with batchedMatMul for both products. */
const kFirstCustomGrad: Core = (qkv) => {
  const [qPart, kPart, vPart] = tf.split(qkv, 3, 1);
  const heads = (x: tf.Tensor, perm: number[]) => tf.transpose(tf.reshape(x, [B, T, H, d]), perm) as tf.Tensor4D;
  const q = heads(qPart, [0, 2, 1, 3]);
  const kT = heads(kPart, [0, 2, 3, 1]);
  const v = heads(vPart, [0, 2, 1, 3]);
  const probs = tf.softmax(batchedMatMul(tf.mul(q, scale), kT)) as tf.Tensor4D;
  return tf.reshape(tf.transpose(batchedMatMul(probs, v), [0, 2, 1, 3]), [B * T, W]) as tf.Tensor2D;
};

/** Computes each (image, head) pair with its own 2-D matMuls: the fast path, but B*H small ops. */
const perHead: Core = (qkv) => {
  const outputs: tf.Tensor[] = [];
  for (let b = 0; b < B; b++) {
    const rows = tf.slice(qkv, [b * T, 0], [T, 3 * W]);
    const heads: tf.Tensor[] = [];
    for (let h = 0; h < H; h++) {
      const q = tf.slice(rows, [0, h * d], [T, d]) as tf.Tensor2D;
      const k = tf.slice(rows, [0, W + h * d], [T, d]) as tf.Tensor2D;
      const v = tf.slice(rows, [0, 2 * W + h * d], [T, d]) as tf.Tensor2D;
      const probs = tf.softmax(tf.matMul(tf.mul(q, scale), tf.transpose(k)));
      heads.push(tf.matMul(probs as tf.Tensor2D, v));
    }
    outputs.push(tf.concat(heads, 1));
  }
  return tf.concat(outputs, 0) as tf.Tensor2D;
};

function time(name: string, core: Core, reference?: Float32Array): Float32Array {
  const qkv = tf.randomNormal([B * T, 3 * W], 0, 1, 'float32', 7) as tf.Tensor2D;
  const dy = tf.randomNormal([B * T, W], 0, 1, 'float32', 8) as tf.Tensor2D;
  // Returning the typed array from tf.tidy would make TF.js walk all its elements, so the
  // gradient tensor is returned and read outside.
  const step = (): Float32Array => {
    const grad = tf.tidy(() => tf.grad((x: tf.Tensor) => tf.sum(tf.mul(core(x as tf.Tensor2D), dy)))(qkv));
    const values = grad.dataSync() as Float32Array;
    grad.dispose();
    return values;
  };
  const result = step();
  // CPU time of this process is reported next to wall time because on a shared machine
  // wall time mostly measures the other processes.
  const runs = 5;
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  for (let i = 0; i < runs; i++) step();
  const ms = (performance.now() - start) / runs;
  const cpu = process.cpuUsage(cpuStart);
  const cpuMs = (cpu.user + cpu.system) / 1000 / runs;
  let maxDiff = 0;
  if (reference) for (let i = 0; i < result.length; i++) maxDiff = Math.max(maxDiff, Math.abs(result[i] - reference[i]));
  console.log(`${name.padEnd(18)} CPU ${cpuMs.toFixed(1).padStart(8)} ms, wall ${ms.toFixed(1).padStart(8)} ms per forward+backward, max |grad difference| ${maxDiff.toExponential(1)}`);
  tf.dispose([qkv, dy]);
  return result;
}

await initBackend();
console.log(`backend ${tf.getBackend()}, B=${B} T=${T} W=${W} heads=${H}`);
const reference = time('flags', flags);
time('explicitTranspose', explicitTranspose, reference);
time('kFirst', kFirst, reference);
time('kFirstCustomGrad', kFirstCustomGrad, reference);
time('perHead', perHead, reference);
