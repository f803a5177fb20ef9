// Times the forward and backward pass of one ViT-B/32 MLP layer ([B*50, 768] x [768, 3072])
// with TF.js's built-in matMul gradient and with layers.ts matMulFast, on the current backend.
// Run: npx tsx bench/linear.ts [batch]   (CLIPFREEZE_BACKEND selects the backend)
import * as tf from '@tensorflow/tfjs';
import { matMulFast } from '../lib/clip/layers.ts';
import { initBackend } from '../lib/util/backend.ts';

const B = Number(process.argv[2] ?? 16);
const rows = B * 50;
const inputs = 768;
const outputs = 3072;

type MatMul = (x: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor2D;

function time(name: string, matMul: MatMul): void {
  const x = tf.randomNormal([rows, inputs], 0, 1, 'float32', 1) as tf.Tensor2D;
  const w = tf.randomNormal([inputs, outputs], 0, 1, 'float32', 2) as tf.Tensor2D;
  const dy = tf.randomNormal([rows, outputs], 0, 1, 'float32', 3) as tf.Tensor2D;
  const step = (): void => {
    const grads = tf.tidy(() => tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(matMul(a as tf.Tensor2D, b as tf.Tensor2D), dy)))([x, w]));
    grads[1].dataSync();
    tf.dispose(grads);
  };
  step();
  // CPU time is reported next to wall time because on a shared machine wall time mostly
  // measures the other processes.
  const runs = 5;
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  for (let i = 0; i < runs; i++) step();
  const wallMs = (performance.now() - start) / runs;
  const cpu = process.cpuUsage(cpuStart);
  const cpuMs = (cpu.user + cpu.system) / 1000 / runs;
  const gflop = (3 * 2 * rows * inputs * outputs) / 1e9;
  console.log(`${name.padEnd(16)} CPU ${cpuMs.toFixed(1).padStart(8)} ms (${(gflop / (cpuMs / 1000)).toFixed(1)} GFLOP/s), wall ${wallMs.toFixed(1).padStart(8)} ms per forward+backward`);
  tf.dispose([x, w, dy]);
}

await initBackend();
console.log(`backend ${tf.getBackend()}, [${rows}, ${inputs}] x [${inputs}, ${outputs}]`);
time('tf.matMul', (x, w) => tf.matMul(x, w));
time('matMulFast', matMulFast);
