// A queue worker: takes trial jobs from BullMQ, runs each in a child process, reports progress
// through the job, and returns the trial's result with its packed run folder. Before it runs a
// trial it checks that the job's checkpoint SHA-256 and data fingerprint equal its own, and
// fails the job for good (UnrecoverableError, no retry) when they differ.
import { fork, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker, UnrecoverableError, WaitingError, type Job } from 'bullmq';
import { writeFileAtomic } from '../util/atomic.ts';
import { moduleLog } from '../util/log.ts';
import { maskRedisUrl, parseRedisUrl, waitForRedis } from './redis.ts';
import { packRunFolder } from './runTransfer.ts';
import type { TrialProcessMessage, TrialProcessRequest } from './trialProcess.ts';
import {
  DEFAULT_LOCK_TIMING,
  DEFAULT_QUEUE_NAME,
  type LockTiming,
  type TrialJobData,
  type TrialJobProgress,
  type TrialJobReturn,
} from './trialQueue.ts';
import { createErrorReporter } from './errorReporter.ts';
import type { TrialResult, TrialSpec } from './trial.ts';

const log = moduleLog('worker');

/** Minimum time between two job.updateProgress calls of one trial, in milliseconds. */
const PROGRESS_INTERVAL_MS = 1000;

/** Abort reason of a trial whose job lock expired. */
const LOCK_LOST = 'job lock lost';

/** Time a trial process gets to exit after SIGTERM before it is killed, in milliseconds. */
const CHILD_KILL_GRACE_MS = 10_000;

export interface WorkerIdentity {
  checkpointSha256: string;
  dataFingerprint: string;
}

export interface TrialWorkerOptions {
  redisUrl: string;
  queueName?: string;
  /** Trials run at once by this worker (one child process each). */
  concurrency?: number;
  /** This machine's checkpoint and data; they replace the paths in each trial's config. */
  checkpoint: string;
  data: string;
  /** Folder of source-domain sets; a trial's source set `name` is looked up as <source>/<basename of its path>. */
  source?: string;
  identity: WorkerIdentity;
  /** Folder for run records on this machine; weight files stay here. */
  runsDir: string;
  /** Module exporting runTrial(spec, {runsDir, onProgress}); defaults to the built-in runner. */
  runnerModule?: string;
  /** TF.js backend for the trial processes (sets CLIPFREEZE_BACKEND there). */
  backend?: string;
  lockTiming?: Partial<LockTiming>;
  /** Time allowed to reach Redis at start-up, in milliseconds. */
  connectTimeoutMs?: number;
}

/** Handling of running trials when a worker stops: hand them back to the queue, or run them to the end. */
export type StopMode = 'release' | 'finish';

export interface TrialWorker {
  readonly name: string;
  /** Stops taking jobs, releases or finishes the running trials, and closes the Redis connections. */
  close(mode: StopMode): Promise<void>;
}

/** Starts a worker on the queue and resolves once it is connected to Redis. */
export async function startTrialWorker(options: TrialWorkerOptions): Promise<TrialWorker> {
  const queueName = options.queueName ?? DEFAULT_QUEUE_NAME;
  const timing = { ...DEFAULT_LOCK_TIMING, ...options.lockTiming };
  const runnerModule = options.runnerModule ?? fileURLToPath(import.meta.resolve('./runTrial.ts'));
  const name = `${os.hostname()}:${process.pid}`;
  const shownUrl = maskRedisUrl(options.redisUrl);
  const running = new Map<string, ChildProcess>();

  const processor = async (job: Job<TrialJobData, TrialJobReturn>, token: string | undefined, signal?: AbortSignal): Promise<TrialJobReturn> => {
    const spec = job.data?.spec;
    if (!spec || typeof spec.id !== 'string' || !spec.config || typeof spec.config !== 'object') {
      const message = `Job ${job.id} on queue '${queueName}' has no valid trial spec; only clipfreeze study and select add jobs to this queue.`;
      log.error(message);
      throw new UnrecoverableError(message);
    }
    checkIdentity(spec, options.identity, name, options);

    const attempt = job.attemptsMade + 1;
    const attempts = job.opts.attempts ?? 1;
    log.info(`Trial ${spec.id} started (attempt ${attempt}/${attempts}, ${spec.kind})`);
    const started = Date.now();

    const localConfig = localizeTrialConfig(spec.config, options);
    if (job.data.planSelectionJson !== undefined) {
      localConfig.planFrom = materializePlanSelection(spec.config.planFrom, job.data.planSelectionJson, options.runsDir);
    }
    const localSpec: TrialSpec = { ...spec, config: localConfig };
    const reportProgress = throttleProgress(job, name, reportError);
    let result: TrialResult;
    try {
      result = await runTrialProcess(localSpec, { ...options, runnerModule }, running, reportProgress, signal);
    } catch (err) {
      if (signal?.aborted && signal.reason === LOCK_LOST) {
        // Another worker takes the trial over; this attempt ends without touching the job.
        throw new Error(`Trial ${spec.id} stopped on ${name}: its job lock was lost`);
      }
      if (signal?.aborted) {
        // Released on shutdown: the trial goes back to the queue at once, and the failed
        // attempt does not count against its retries.
        await job.moveToWait(token);
        log.info(`Trial ${spec.id} released back to the queue`);
        throw new WaitingError();
      }
      log.error(`Trial ${spec.id} failed (attempt ${attempt}/${attempts}): ${(err as Error).message}`);
      // An invalid config fails the same way on every attempt and every worker.
      if ((err as Error).name === 'ConfigError') throw new UnrecoverableError((err as Error).message);
      throw err;
    }

    const run = packRunFolder(path.join(options.runsDir, result.runId), result.runId);
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const left = run.leftOnWorker.length ? `; ${run.leftOnWorker.length} weight file(s) kept in ${run.workerRunDir}` : '';
    log.info(`Trial ${spec.id} finished in ${seconds} s (run ${result.runId}, ${run.files.length} files sent${left})`);
    return { result, run, worker: name };
  };

  const worker = new Worker<TrialJobData, TrialJobReturn>(queueName, processor, {
    connection: parseRedisUrl(options.redisUrl),
    concurrency: options.concurrency ?? 1,
    name,
    lockDuration: timing.lockDurationMs,
    stalledInterval: timing.stalledIntervalMs,
    maxStalledCount: timing.maxStalledCount,
    autorun: false,
  });
  const reportError = createErrorReporter(log, `Redis ${shownUrl}`);
  worker.on('error', reportError);

  // A lock that could not be renewed has expired, for example after Redis was unreachable for
  // longer than the lock duration. The stalled-job check hands such a trial to another worker,
  // so running it here too would only waste the machine.
  worker.on('lockRenewalFailed', (jobIds: string[]) => {
    for (const jobId of jobIds) {
      log.warn(`Lost the job lock of trial ${jobId}; stopping it here because another worker takes it over`);
      worker.cancelJob(jobId, LOCK_LOST);
    }
  });

  try {
    await waitForRedis(worker, options.redisUrl, options.connectTimeoutMs ?? 30_000);
  } catch (err) {
    await worker.close(true);
    throw err;
  }
  worker.run().catch((err: Error) => log.error(`Worker ${name} stopped taking trials: ${err.message}`));
  log.info(
    `Worker ${name} waiting for trials on queue '${queueName}' at ${shownUrl} ` +
      `(concurrency ${options.concurrency ?? 1}, lock ${timing.lockDurationMs / 1000} s, stalled check every ${timing.stalledIntervalMs / 1000} s)`,
  );

  let closing: Promise<void> | null = null;
  return {
    name,
    close(mode: StopMode) {
      // A release requested while finishing (a second signal) still releases the running trials.
      if (closing && mode === 'release' && running.size) {
        log.info(`Releasing ${running.size} running trial(s)`);
        worker.cancelAllJobs('worker stopping');
      }
      closing ??= (async () => {
        const active = [...running.keys()];
        if (mode === 'release' && active.length) {
          log.info(`Worker stopping: releasing ${active.length} running trial(s) (${active.join(', ')})`);
          worker.cancelAllJobs('worker stopping');
        } else if (active.length) {
          log.info(`Worker stopping after ${active.length} running trial(s) finish (${active.join(', ')})`);
        } else {
          log.info('Worker stopping');
        }
        await worker.close();
        log.info('Worker stopped');
      })();
      return closing;
    },
  };
}

/** Throws an UnrecoverableError naming both hashes when the job's inputs differ from this worker's. */
function checkIdentity(spec: TrialSpec, own: WorkerIdentity, name: string, options: TrialWorkerOptions): void {
  const problems: string[] = [];
  if (spec.checkpointSha256 !== own.checkpointSha256) {
    problems.push(`checkpoint SHA-256 ${spec.checkpointSha256}, but this worker's checkpoint ${options.checkpoint} has ${own.checkpointSha256}`);
  }
  if (spec.dataFingerprint !== own.dataFingerprint) {
    problems.push(`data fingerprint ${spec.dataFingerprint}, but this worker's data ${options.data} has ${own.dataFingerprint}`);
  }
  if (problems.length === 0) return;

  const message =
    `Trial ${spec.id} rejected by worker ${name}: the trial needs ${problems.join('; and ')}. ` +
    'Start the worker with the same checkpoint and data files as the study.';
  log.error(message);
  throw new UnrecoverableError(message);
}

/**
 * Returns the trial config with this machine's paths: `checkpoint` and `data` become the worker's
 * own, and each source set's `path` becomes <source>/<basename of the coordinator's path>.
 * Other keys are kept as they are.
 */
export function localizeTrialConfig(
  config: Record<string, unknown>,
  paths: { checkpoint: string; data: string; source?: string },
): Record<string, unknown> {
  const local: Record<string, unknown> = { ...config };
  if (typeof local.checkpoint === 'string') local.checkpoint = path.resolve(paths.checkpoint);
  if (typeof local.data === 'string') local.data = path.resolve(paths.data);
  if (paths.source && Array.isArray(local.source)) {
    local.source = local.source.map((set: unknown) => {
      if (!set || typeof set !== 'object' || typeof (set as { path?: unknown }).path !== 'string') return set;
      const original = (set as { path: string }).path;
      return { ...set, path: path.join(path.resolve(paths.source!), path.basename(original)) };
    });
  }
  return local;
}

/**
 * Returns a path for the trial's `planFrom`: the coordinator's own path when this machine has the
 * same selection.json there (a shared file system), otherwise a copy written under
 * <runsDir>/.plans/<sha256 of the selection>/.
 */
function materializePlanSelection(planFrom: unknown, selectionJson: string, runsDir: string): string {
  if (typeof planFrom === 'string' && fs.existsSync(planFrom)) {
    const file = fs.statSync(planFrom).isDirectory() ? path.join(planFrom, 'selection.json') : planFrom;
    if (fs.existsSync(file) && fs.readFileSync(file, 'utf8') === selectionJson) return planFrom;
  }
  const hash = crypto.createHash('sha256').update(selectionJson).digest('hex').slice(0, 16);
  const dir = path.resolve(runsDir, '.plans', hash);
  writeFileAtomic(path.join(dir, 'selection.json'), selectionJson);
  return dir;
}

/** Runs one trial in a child process; rejects when the process fails, exits early or is aborted. */
function runTrialProcess(
  spec: TrialSpec,
  options: TrialWorkerOptions & { runnerModule: string },
  running: Map<string, ChildProcess>,
  onProgress: (fraction: number, message: string) => void,
  signal?: AbortSignal,
): Promise<TrialResult> {
  const env = { ...process.env };
  if (options.backend) env.CLIPFREEZE_BACKEND = options.backend;

  // tsx runs the TypeScript sources; resolving it here keeps this working from any folder.
  const child = fork(fileURLToPath(import.meta.resolve('./trialProcess.ts')), [], {
    execArgv: ['--import', import.meta.resolve('tsx')],
    env,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  running.set(spec.id, child);

  return new Promise<TrialResult>((resolve, reject) => {
    let settled: TrialResult | Error | null = null;
    let killTimer: NodeJS.Timeout | null = null;

    const abort = () => {
      settled ??= new Error(`Trial ${spec.id} aborted: ${String(signal?.reason ?? 'worker stopping')}`);
      child.kill('SIGTERM');
      killTimer = setTimeout(() => child.kill('SIGKILL'), CHILD_KILL_GRACE_MS);
    };
    signal?.addEventListener('abort', abort, { once: true });

    child.on('message', (message: TrialProcessMessage) => {
      if (message.type === 'progress') onProgress(message.fraction, message.message);
      else if (message.type === 'result') settled ??= message.result;
      else if (message.type === 'error') settled ??= Object.assign(new Error(message.message), { name: message.name, stack: message.stack });
    });

    child.on('exit', (code, exitSignal) => {
      running.delete(spec.id);
      signal?.removeEventListener('abort', abort);
      if (killTimer) clearTimeout(killTimer);
      if (settled instanceof Error) reject(settled);
      else if (settled) resolve(settled);
      else reject(new Error(`Trial process for ${spec.id} exited without a result (exit code ${code}, signal ${exitSignal}).`));
    });

    const request: TrialProcessRequest = { spec, runsDir: path.resolve(options.runsDir), runnerModule: options.runnerModule };
    child.send(request);
  });
}

/** Returns a progress callback that stores at most one update per second in the job. */
function throttleProgress(
  job: Job<TrialJobData, TrialJobReturn>,
  worker: string,
  reportError: (err: Error) => void,
): (fraction: number, message: string) => void {
  let last = 0;
  return (fraction, message) => {
    const now = Date.now();
    if (now - last < PROGRESS_INTERVAL_MS && fraction < 1) return;
    last = now;
    const progress: TrialJobProgress = { fraction, message, worker };
    // A lost progress update (Redis briefly away) is harmless; the next one replaces it.
    job.updateProgress(progress as unknown as object).catch((err: Error) => reportError(new Error(`progress update of trial ${job.id} failed: ${err.message}`)));
  };
}
