// Data-parallel gradients across threads, for backends that compute on one core.
//
// TF.js runs its wasm backend on one thread in Node, so on a machine with two cores one
// idles during training. Here the micro-batches of each optimiser step are dealt in turn to
// worker threads, each with its own wasm backend and a copy of the suffix weights, and to the
// main thread:
//
//   micro-batch   0       1      2       3      ...
//   computed by   worker  main   worker  main   ...   (with one worker)
//
// Every thread sums its micro-batches' gradients of their loss shares. Together the sums are
// the gradient of the batch's mean loss, as on one thread, up to float rounding because the
// additions happen in another order (the tests allow 1e-5 relative). After the AdamW update
// the trained weights are sent to the workers.
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import type * as tf from '@tensorflow/tfjs';
import type { ClipModel } from '../clip/model.ts';
import { HEAD_PARAMS, HEAD_UNIT, layerUnits } from '../freeze/units.ts';
import { moduleLog } from '../util/log.ts';
import type { GradientBuffer } from './gradientBuffer.ts';
import type { WorkerReply, WorkerRequest, WorkerWeight } from './gradientWorker.ts';
import type { TaskHead } from './head.ts';
import type { SplitPoint } from './imagePath.ts';
import type { MicroBatch, NamedVariable } from './microBatch.ts';

const logger = moduleLog('train');

/**
 * Below this many training FLOPs in a run (about 10 s of one wasm thread), starting a worker
 * (a second or two: loading TF.js and copying the weights) costs more than it saves.
 */
export const MIN_PARALLEL_RUN_FLOPS = 200e9;

/** At most this many threads by default, because each worker keeps a copy of the suffix weights. */
export const MAX_AUTO_THREADS = 4;

export interface ThreadChoice {
  threads: number;
  reason: string;
}

/**
 * Chooses how many threads compute gradients (1 = the main thread alone). `setting` is the
 * config's trainThreads: a number is used as given (capped at the micro-batches per step);
 * 'auto' uses every core on the wasm and cpu backends when the run is long enough to repay
 * the workers' start.
 */
export function chooseTrainThreads(
  setting: number | 'auto',
  context: { backend: string; cores: number; microBatchesPerStep: number; runFlops: number },
): ThreadChoice {
  const cap = (n: number) => Math.max(1, Math.min(n, context.microBatchesPerStep));
  if (setting !== 'auto') {
    const threads = cap(setting);
    const reasons = [`trainThreads ${setting}`];
    if (threads < setting) reasons.push(`capped at the ${context.microBatchesPerStep} micro-batches per step`);
    // Measured with a small test checkpoint (width 128, 3 blocks) on a busy 2-core machine:
    // 8 threads trained at 26 images/s, 2 threads at 45.
    if (threads > context.cores) reasons.push(`more than the ${context.cores} cores, so threads share cores and usually train slower than ${context.cores} threads`);
    return { threads, reason: reasons.join(', ') };
  }
  if (context.backend !== 'wasm' && context.backend !== 'cpu') return { threads: 1, reason: `the ${context.backend} backend uses several cores itself` };
  if (context.cores < 2) return { threads: 1, reason: 'one core' };
  if (context.runFlops < MIN_PARALLEL_RUN_FLOPS) {
    return { threads: 1, reason: `the run's ${(context.runFlops / 1e9).toFixed(1)} GFLOP do not repay starting a worker` };
  }
  const threads = cap(Math.min(context.cores, MAX_AUTO_THREADS));
  return { threads, reason: threads > 1 ? `${context.cores} cores on the ${context.backend} backend` : 'one micro-batch per step' };
}

/** Returns the number of cores this process may use. */
export function availableCores(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

interface Handle {
  worker: Worker;
  /** Requests that expect a reply ('init', 'collect'), oldest first. */
  waiting: Array<{ resolve: (reply: WorkerReply) => void; reject: (error: Error) => void }>;
  /** An error no request was waiting for; thrown at the next request. */
  failure: Error | null;
}

export interface GradientWorkersOptions {
  model: ClipModel;
  head: TaskHead;
  split: SplitPoint;
  /** The optimised parameters (tower and head) by canonical name. */
  params: NamedVariable[];
  posWeight?: number[];
  backend: string;
}

export class GradientWorkers {
  private closing = false;

  private constructor(private readonly handles: Handle[]) {}

  /** Starts `count` worker threads with a copy of the suffix weights and waits until they are ready. */
  static async start(count: number, options: GradientWorkersOptions): Promise<GradientWorkers> {
    const started = performance.now();
    const init = initRequest(options);
    const pool = new GradientWorkers([]);
    for (let i = 0; i < count; i++) pool.handles.push(pool.spawn(i));
    try {
      await Promise.all(pool.handles.map((h) => pool.request(h, init)));
    } catch (error) {
      await pool.close();
      throw error;
    }
    logger.info(`Gradient workers: ${count} started in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    return pool;
  }

  get size(): number {
    return this.handles.length;
  }

  /** Sends a micro-batch to worker `index` and disposes its tensors; the result comes with collect(). */
  submit(index: number, micro: MicroBatch, batchSize: number): void {
    const handle = this.handles[index];
    this.throwFailure(handle);
    const request: WorkerRequest = {
      type: 'micro',
      x: micro.x.dataSync() as Float32Array,
      xShape: [...micro.x.shape],
      labels: micro.labels.dataSync() as Float32Array,
      findings: micro.labels.shape[1],
      batchSize,
    };
    micro.x.dispose();
    micro.labels.dispose();
    handle.worker.postMessage(request);
  }

  /** Waits for every worker's gradient sums of this step, adds them to `grads`, and returns their losses. */
  async collect(grads: GradientBuffer): Promise<Array<{ loss: number; images: number }>> {
    const replies = await Promise.all(this.handles.map((h) => this.request(h, { type: 'collect' })));
    const losses: Array<{ loss: number; images: number }> = [];
    for (const reply of replies) {
      if (reply.type !== 'gradients') throw new Error(`Gradient worker replied '${reply.type}' to 'collect'.`);
      reply.names.forEach((name, i) => grads.addValues(name, reply.sums[i]));
      losses.push(...reply.losses);
    }
    return losses;
  }

  /** Sends the trained weights' current values to every worker (after an optimiser update). */
  syncWeights(params: NamedVariable[]): void {
    const values = params.map((p) => ({ name: p.name, data: p.variable.dataSync() as Float32Array }));
    for (const handle of this.handles) {
      this.throwFailure(handle);
      handle.worker.postMessage({ type: 'weights', values } satisfies WorkerRequest);
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.handles.map((h) => h.worker.terminate()));
  }

  private spawn(index: number): Handle {
    const worker = new Worker(new URL('./gradientWorker.mjs', import.meta.url));
    const handle: Handle = { worker, waiting: [], failure: null };
    const fail = (error: Error) => {
      const waiting = handle.waiting.shift();
      if (waiting) {
        waiting.reject(error);
        return;
      }
      // No request waits for a reply (a weight update failed), so the next request raises it.
      logger.warn(error.message);
      handle.failure ??= error;
    };
    worker.on('message', (reply: WorkerReply) => {
      if (reply.type === 'error') fail(new Error(`Gradient worker ${index + 1} failed: ${reply.message}`));
      else handle.waiting.shift()?.resolve(reply);
    });
    worker.on('error', (error) => fail(new Error(`Gradient worker ${index + 1} crashed: ${error.stack ?? error.message}`)));
    worker.on('exit', (code) => {
      if (this.closing) return;
      const error = new Error(
        `Gradient worker ${index + 1} exited with code ${code}. ` +
          `To train on the main thread alone, run again with --train-threads 1 (trainThreads 1 in a config file). The run resumes from its last finished epoch.`,
      );
      for (const waiting of handle.waiting.splice(0)) waiting.reject(error);
      handle.failure ??= error;
    });
    return handle;
  }

  private request(handle: Handle, request: WorkerRequest): Promise<WorkerReply> {
    this.throwFailure(handle);
    return new Promise((resolve, reject) => {
      handle.waiting.push({ resolve, reject });
      handle.worker.postMessage(request);
    });
  }

  private throwFailure(handle: Handle): void {
    if (!handle.failure) return;
    const failure = handle.failure;
    handle.failure = null;
    throw failure;
  }
}

/** Builds the 'init' request: the weights of every unit from the first trained one on. */
function initRequest(options: GradientWorkersOptions): WorkerRequest {
  const { model, head, split, params } = options;
  const trained = new Set(params.map((p) => p.name));
  const suffixUnits = new Set(split.units.slice(split.start));
  const weights: WorkerWeight[] = [];
  for (const unit of layerUnits(model.config)) {
    if (!suffixUnits.has(unit.name) || unit.name === HEAD_UNIT) continue;
    for (const p of unit.params) {
      const variable: tf.Variable | undefined = model.params.get(p.name);
      if (!variable) throw new Error(`Parameter '${p.name}' of unit '${unit.name}' is missing from the model.`);
      weights.push({ name: p.name, shape: [...variable.shape], data: variable.dataSync() as Float32Array, trainable: trained.has(p.name) });
    }
  }
  const [embedDim, findings] = head.weight.shape as [number, number];
  return {
    type: 'init',
    backend: options.backend,
    config: model.config,
    split,
    weights,
    head: { weight: head.weight.dataSync() as Float32Array, bias: head.bias.dataSync() as Float32Array, shape: [embedDim, findings], trainable: trained.has(HEAD_PARAMS.weight) },
    posWeight: options.posWeight,
  };
}
