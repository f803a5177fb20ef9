// Measures how far two wasm backends in worker threads, each encoding half of a batch, speed
// up the ViT-B/32 image forward pass over one backend on the main thread. TF.js 4.22 runs
// the wasm backend single-threaded in Node, so one backend leaves the second core idle.
// This is a measurement of that lever, not the product's code path.
//
//   npx tsx bench/parallel-forward.ts [--batch 16] [--repeats 2] [--workers 2]
//
// Each worker builds the same random model from seed 0, so no weights cross threads.
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { ClipModel } from '../lib/clip/model.ts';
import { initBackend } from '../lib/util/backend.ts';
import { benchConfig } from './shapes.ts';

function option(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? Number(process.argv[index + 1]) : fallback;
}

const batch = option('batch', 16);
const repeats = option('repeats', 2);
const workerCount = option('workers', 2);
const config = benchConfig('ViT-B/32');
const size = config.vision.imageSize;
const imageValues = 3 * size * size;

await initBackend();
const pixels = tf.randomNormal([batch, 3, size, size], 0, 1, 'float32', 1) as tf.Tensor4D;
const pixelValues = pixels.dataSync() as Float32Array;

// One backend on the main thread.
const model = ClipModel.random(config, 0);
const encodeHere = (): Float32Array => {
  const features = model.encodeImage(pixels);
  const values = features.dataSync() as Float32Array;
  features.dispose();
  return values;
};
const reference = encodeHere();
let started = performance.now();
for (let i = 0; i < repeats; i++) encodeHere();
const singleMs = (performance.now() - started) / repeats / batch;
model.dispose();

// Worker threads, each with its own wasm backend and model.
const workers = Array.from({ length: workerCount }, () => new Worker(new URL('./parallel-forward-worker.mjs', import.meta.url)));
await Promise.all(workers.map((w) => new Promise((resolve) => w.once('message', resolve))));

async function encodeInWorkers(): Promise<Float32Array> {
  const per = Math.ceil(batch / workerCount);
  const parts = await Promise.all(
    workers.map((worker, w) => {
      const first = w * per;
      const count = Math.max(0, Math.min(per, batch - first));
      const slice = pixelValues.slice(first * imageValues, (first + count) * imageValues);
      return new Promise<Float32Array>((resolve) => {
        worker.once('message', (values: Float32Array) => resolve(values));
        worker.postMessage({ pixels: slice, count }, [slice.buffer]);
      });
    }),
  );
  const out = new Float32Array(batch * config.embedDim);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

const parallel = await encodeInWorkers();
started = performance.now();
for (let i = 0; i < repeats; i++) await encodeInWorkers();
const parallelMs = (performance.now() - started) / repeats / batch;
let maxDiff = 0;
for (let i = 0; i < reference.length; i++) maxDiff = Math.max(maxDiff, Math.abs(reference[i] - parallel[i]));
await Promise.all(workers.map((w) => w.terminate()));

console.log(
  JSON.stringify({ batch, workers: workerCount, singleMsPerImage: singleMs, parallelMsPerImage: parallelMs, speedup: singleMs / parallelMs, maxFeatureDifference: maxDiff }),
);
