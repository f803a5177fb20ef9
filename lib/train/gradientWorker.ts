// The worker-thread side of a data-parallel training step (see gradientWorkers.ts).
//
// Each worker has its own TF.js wasm backend and a copy of the weights the suffix of the image
// path uses (the units from the first trained one to the task head). Per optimiser step it
// receives some of the micro-batches, sums their gradients with the same accumulateGradients
// as the main thread, and hands the sums back when asked. After the update it receives the new
// values of the trained weights.
import { parentPort } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import type { ClipConfig } from '../clip/config.ts';
import { visionBlock, visionEmbed, visionHead } from '../clip/vision.ts';
import { initBackend } from '../util/backend.ts';
import { log } from '../util/log.ts';
import { GradientBuffer } from './gradientBuffer.ts';
import { TaskHead } from './head.ts';
import type { SplitPoint, VisionPath } from './imagePath.ts';
import { accumulateGradients, type NamedVariable } from './microBatch.ts';

/** One weight in the stored layout, with whether its gradient is taken. */
export interface WorkerWeight {
  name: string;
  shape: number[];
  data: Float32Array;
  trainable: boolean;
}

export type WorkerRequest =
  | { type: 'init'; backend: string; config: ClipConfig; split: SplitPoint; weights: WorkerWeight[]; head: { weight: Float32Array; bias: Float32Array; shape: [number, number]; trainable: boolean }; posWeight?: number[] }
  // x: prefix output [n, ...xShape.slice(1)]; labels [n, F]; batchSize: images in the whole batch.
  | { type: 'micro'; x: Float32Array; xShape: number[]; labels: Float32Array; findings: number; batchSize: number }
  | { type: 'collect' }
  | { type: 'weights'; values: Array<{ name: string; data: Float32Array }> };

export type WorkerReply =
  | { type: 'ready' }
  | { type: 'gradients'; losses: Array<{ loss: number; images: number }>; names: string[]; sums: Float32Array[] }
  | { type: 'error'; message: string };

interface WorkerState {
  path: VisionPath;
  head: TaskHead;
  split: SplitPoint;
  trained: NamedVariable[];
  variables: Map<string, tf.Variable>;
  posWeight?: number[];
  grads: GradientBuffer;
  losses: Array<{ loss: number; images: number }>;
  /** The first error of this step, reported at 'collect' (micro-batches get no reply). */
  error: string | null;
}

async function init(request: Extract<WorkerRequest, { type: 'init' }>): Promise<WorkerState> {
  // The main thread has logged the backend; a worker reports only through its replies.
  log.level = 'warn';
  await initBackend(request.backend);
  const variables = new Map<string, tf.Variable>();
  for (const w of request.weights) {
    variables.set(w.name, tf.tidy(() => tf.variable(tf.tensor(w.data, w.shape, 'float32'), w.trainable, `worker/${w.name}`)));
  }
  const param = (name: string): tf.Tensor => {
    const variable = variables.get(name);
    if (!variable) throw new Error(`Worker has no weight '${name}'; the suffix needs it.`);
    return variable;
  };
  const { config } = request;
  const path: VisionPath = {
    // runSuffix passes tensors only.
    visionEmbed: (pixels) => visionEmbed(param, config, pixels as tf.Tensor4D),
    visionBlock: (index, x) => visionBlock(param, config, index, x),
    visionHead: (x) => visionHead(param, config, x),
  };

  const head = TaskHead.fromZeroShot(request.head);
  const trained: NamedVariable[] = request.weights.filter((w) => w.trainable).map((w) => ({ name: w.name, variable: variables.get(w.name)! }));
  for (const [name, variable] of head.variables()) {
    if (request.head.trainable) trained.push({ name, variable });
    variables.set(name, variable);
  }
  return { path, head, split: request.split, trained, variables, posWeight: request.posWeight, grads: new GradientBuffer(), losses: [], error: null };
}

function micro(state: WorkerState, request: Extract<WorkerRequest, { type: 'micro' }>): void {
  if (state.error) return;
  const images = request.xShape[0];
  const x = tf.tensor(request.x, request.xShape, 'float32');
  const labels = tf.tensor2d(request.labels, [images, request.findings]);
  const loss = accumulateGradients(state.path, state.head, state.split, state.trained, { x, labels }, request.batchSize, state.posWeight, state.grads);
  state.losses.push({ loss, images });
}

/** Returns this step's gradient sums and losses and starts the next step, or raises the step's first error. */
function collect(state: WorkerState): Extract<WorkerReply, { type: 'gradients' }> {
  const { grads, losses, error } = state;
  state.grads = new GradientBuffer();
  state.losses = [];
  state.error = null;
  if (error) throw new Error(error);

  const names = [...grads.entries().keys()];
  return { type: 'gradients', losses, names, sums: names.map((name) => grads.entries().get(name)!) };
}

function setWeights(state: WorkerState, values: Array<{ name: string; data: Float32Array }>): void {
  for (const { name, data } of values) {
    const variable = state.variables.get(name);
    if (!variable) throw new Error(`Worker has no weight '${name}' to update.`);
    tf.tidy(() => variable.assign(tf.tensor(data, variable.shape, 'float32')));
  }
}

const port = parentPort;
if (!port) throw new Error('gradientWorker.ts runs only as a worker thread (see gradientWorkers.ts).');
let state: WorkerState | null = null;

// Requests are handled one at a time in arrival order, so 'collect' includes every
// micro-batch sent before it.
let queue: Promise<void> = Promise.resolve();
port.on('message', (request: WorkerRequest) => {
  queue = queue.then(async () => {
    try {
      if (request.type === 'init') {
        state = await init(request);
        port.postMessage({ type: 'ready' } satisfies WorkerReply);
        return;
      }
      if (!state) throw new Error(`Worker received '${request.type}' before 'init'.`);
      if (request.type === 'micro') {
        try {
          micro(state, request);
        } catch (error) {
          state.error = (error as Error).stack ?? String(error);
        }
      } else if (request.type === 'weights') {
        setWeights(state, request.values);
      } else if (request.type === 'collect') {
        const reply = collect(state);
        port.postMessage(reply, reply.sums.map((sum) => sum.buffer as ArrayBuffer));
      }
    } catch (error) {
      port.postMessage({ type: 'error', message: (error as Error).stack ?? String(error) } satisfies WorkerReply);
    }
  });
});
