// Worker thread of bench/parallel-forward.ts: its own wasm backend and the same random model,
// encoding the images it receives.
import { parentPort } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { ClipModel } from '../lib/clip/model.ts';
import { initBackend } from '../lib/util/backend.ts';
import { benchConfig } from './shapes.ts';

await initBackend();
const config = benchConfig('ViT-B/32');
const size = config.vision.imageSize;
const model = ClipModel.random(config, 0);
parentPort!.on('message', ({ pixels, count }: { pixels: Float32Array; count: number }) => {
  const features = tf.tidy(() => model.encodeImage(tf.tensor4d(pixels, [count, 3, size, size])));
  const values = features.dataSync() as Float32Array;
  features.dispose();
  parentPort!.postMessage(values, [values.buffer]);
});
parentPort!.postMessage('ready');
