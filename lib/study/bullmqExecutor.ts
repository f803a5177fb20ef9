// Trial executor that runs trials on `clipfreeze worker` processes, on this machine or others,
// through a BullMQ queue in Redis. The coordinator (this class) enqueues one job per trial with
// jobId = spec.id, so enqueueing a trial twice runs it once; shows the workers' progress; and
// writes each finished run folder into its own runs folder as a local run would leave it.
//
// Completion is read by polling each job's state rather than from queue events, because events
// sent while the coordinator was disconnected (a Redis restart) are lost, whereas job states
// persist in Redis. Progress, where a lost event does no harm, comes from queue events.
import fs from 'node:fs';
import path from 'node:path';
import { Queue, QueueEvents, type Job } from 'bullmq';
import { moduleLog } from '../util/log.ts';
import { stableStringify } from '../util/hash.ts';
import { readJson } from '../util/atomic.ts';
import { createErrorReporter } from './errorReporter.ts';
import { maskRedisUrl, parseRedisUrl, waitForRedis } from './redis.ts';
import { unpackRunFolder } from './runTransfer.ts';
import { DEFAULT_QUEUE_NAME, type TrialJobData, type TrialJobProgress, type TrialJobReturn } from './trialQueue.ts';
import type { TrialExecutor, TrialProgress, TrialResult, TrialSpec, TrialSummary } from './trial.ts';

const log = moduleLog('bullmq');

export interface BullmqExecutorOptions {
  redisUrl: string;
  /** The coordinator's runs folder; finished run folders are written here. */
  runsDir: string;
  queueName?: string;
  /** Attempts per trial, the first one included. */
  attempts?: number;
  /** First retry delay in milliseconds; each further retry waits twice as long. */
  backoffMs?: number;
  /** Interval between two checks of the job states, in milliseconds. */
  pollIntervalMs?: number;
  /** Time allowed to reach Redis, in milliseconds. */
  connectTimeoutMs?: number;
  /** Interval between two "waiting for workers" log lines while no worker is connected, in milliseconds. */
  idleWarningMs?: number;
  /** Reads the result of a trial whose run folder is already complete; defaults to readCompletedTrial. */
  readCompleted?: (runsDir: string, spec: TrialSpec) => TrialResult;
}

const DEFAULTS = {
  queueName: DEFAULT_QUEUE_NAME,
  attempts: 3,
  backoffMs: 30_000,
  pollIntervalMs: 1000,
  connectTimeoutMs: 30_000,
  idleWarningMs: 60_000,
};

interface PendingTrial {
  spec: TrialSpec;
  state: string;
  attemptsMade: number;
}

export class BullmqExecutor implements TrialExecutor {
  readonly name = 'bullmq';
  private readonly options: BullmqExecutorOptions & typeof DEFAULTS;
  private readonly shownUrl: string;
  private queue: Queue<TrialJobData, TrialJobReturn> | null = null;
  private events: QueueEvents | null = null;
  private readonly reportError: (err: Error) => void;

  constructor(options: BullmqExecutorOptions) {
    this.options = { ...DEFAULTS, ...stripUndefined(options), redisUrl: options.redisUrl, runsDir: options.runsDir };
    if (!Number.isInteger(this.options.attempts) || this.options.attempts < 1) {
      throw new Error(`Invalid number of attempts per trial: ${this.options.attempts}. Use an integer of 1 or more.`);
    }
    this.shownUrl = maskRedisUrl(options.redisUrl);
    this.reportError = createErrorReporter(log, `Redis ${this.shownUrl}`);
  }

  async runAll(specs: TrialSpec[], onProgress?: (p: TrialProgress) => void): Promise<TrialResult[]> {
    const results = new Map<string, TrialResult>();
    const failures = new Map<string, string>();
    const pending = new Map<string, PendingTrial>();
    const readCompleted = this.options.readCompleted ?? readCompletedTrial;

    // Step 1: trials whose run folder is already complete here are not enqueued again.
    for (const spec of specs) {
      if (results.has(spec.id) || pending.has(spec.id)) continue;
      if (fs.existsSync(path.join(this.options.runsDir, spec.id, 'complete.json'))) {
        results.set(spec.id, readCompleted(this.options.runsDir, spec));
      } else {
        pending.set(spec.id, { spec, state: 'new', attemptsMade: 0 });
      }
    }
    const skipped = results.size;
    if (pending.size === 0) {
      log.info(`All ${skipped} trial(s) already complete in ${this.options.runsDir}`);
      return specs.map((s) => results.get(s.id)!);
    }

    // Step 2: enqueue the rest, and follow their progress through queue events.
    const queue = await this.connect();
    this.events!.on('progress', ({ jobId, data }) => {
      const trial = pending.get(jobId);
      const progress = data as Partial<TrialJobProgress>;
      if (!trial || typeof progress?.fraction !== 'number') return;
      onProgress?.({ id: jobId, fraction: progress.fraction, message: `${progress.message ?? ''} [${progress.worker ?? 'worker'}]` });
    });
    for (const trial of pending.values()) await this.enqueue(queue, trial.spec);
    log.info(
      `Enqueued ${pending.size} trial(s) on queue '${this.options.queueName}' at ${this.shownUrl}` +
        (skipped ? ` (${skipped} already complete)` : ''),
    );

    // Step 3: poll job states until every trial has completed or failed for good.
    let lastIdleWarning = Date.now();
    while (pending.size > 0) {
      await sleep(this.options.pollIntervalMs);
      try {
        for (const trial of [...pending.values()]) {
          const outcome = await this.checkTrial(queue, trial);
          if (outcome === null) continue;
          pending.delete(trial.spec.id);
          if ('error' in outcome) {
            failures.set(trial.spec.id, outcome.error);
          } else {
            results.set(trial.spec.id, outcome.result);
            onProgress?.({ id: trial.spec.id, fraction: 1, message: 'complete' });
          }
        }
        if (pending.size > 0 && Date.now() - lastIdleWarning >= this.options.idleWarningMs) {
          lastIdleWarning = Date.now();
          await this.warnIfNoWorkers(queue, pending.size);
        }
      } catch (err) {
        // Redis unreachable for a moment: the job states are still there when it is back.
        this.reportError(err as Error);
      }
    }

    if (failures.size > 0) {
      const lines = [...failures].map(([id, reason]) => `  ${id}: ${reason}`);
      throw new Error(
        `${failures.size} of ${specs.length} trial(s) failed (the ${results.size} finished are recorded in ${this.options.runsDir}):\n${lines.join('\n')}`,
      );
    }
    return specs.map((s) => results.get(s.id)!);
  }

  async close(): Promise<void> {
    const events = this.events;
    const queue = this.queue;
    this.events = null;
    this.queue = null;
    await events?.close();
    await queue?.close();
  }

  private async connect(): Promise<Queue<TrialJobData, TrialJobReturn>> {
    if (this.queue) return this.queue;
    const connection = parseRedisUrl(this.options.redisUrl);
    const queue = new Queue<TrialJobData, TrialJobReturn>(this.options.queueName, { connection });
    queue.on('error', this.reportError);
    try {
      await waitForRedis(queue, this.options.redisUrl, this.options.connectTimeoutMs);
    } catch (err) {
      await queue.close();
      throw err;
    }

    // Created only once Redis is reachable: closing a QueueEvents that never connected hangs
    // (BullMQ 6.7).
    const events = new QueueEvents(this.options.queueName, { connection });
    events.on('error', this.reportError);
    this.queue = queue;
    this.events = events;
    await waitForRedis(events, this.options.redisUrl, this.options.connectTimeoutMs);
    return queue;
  }

  /** Adds the trial's job unless a job with its id exists; a failed job, or one with another spec, is replaced. */
  private async enqueue(queue: Queue<TrialJobData, TrialJobReturn>, spec: TrialSpec): Promise<void> {
    const existing = await queue.getJob(spec.id);
    if (existing) {
      const state = await existing.getState();
      const sameSpec = stableStringify(existing.data?.spec) === stableStringify(spec);
      if (sameSpec && state === 'failed') {
        log.info(`Trial ${spec.id} failed in an earlier study (${existing.failedReason}); retrying it`);
        await existing.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
        return;
      }
      if (sameSpec || state === 'active') {
        if (!sameSpec) log.warn(`Trial ${spec.id} is running on a worker with another spec; its result will be checked when it finishes`);
        return;
      }
      log.info(`Trial ${spec.id} is in the queue with another spec (state ${state}); replacing it`);
      await existing.remove();
    }
    await queue.add(spec.kind, { spec }, {
      jobId: spec.id,
      attempts: this.options.attempts,
      backoff: { type: 'exponential', delay: this.options.backoffMs },
      removeOnComplete: false,
      removeOnFail: false,
    });
  }

  /** Returns the trial's outcome once it has one, or null while it is still queued or running. */
  private async checkTrial(
    queue: Queue<TrialJobData, TrialJobReturn>,
    trial: PendingTrial,
  ): Promise<{ result: TrialResult } | { error: string } | null> {
    const id = trial.spec.id;
    const job = await queue.getJob(id);
    if (!job) {
      // Redis lost the job (restarted without persistence, or flushed): add it again.
      log.warn(`Trial ${id} is no longer in Redis; enqueueing it again`);
      await this.enqueue(queue, trial.spec);
      trial.state = 'new';
      return null;
    }

    const state = await job.getState();
    this.logTransition(trial, job, state);
    if (state === 'completed') {
      try {
        return { result: this.collect(job) };
      } catch (err) {
        log.error((err as Error).message);
        return { error: (err as Error).message };
      }
    }
    if (state === 'failed') {
      const attempts = `${job.attemptsMade} attempt${job.attemptsMade === 1 ? '' : 's'}`;
      return { error: `failed after ${attempts}: ${job.failedReason}` };
    }
    return null;
  }

  private logTransition(trial: PendingTrial, job: Job<TrialJobData, TrialJobReturn>, state: string): void {
    const id = trial.spec.id;
    // attemptsMade also counts the successful attempt, so only a job still queued had a failed one.
    if (job.attemptsMade > trial.attemptsMade && state !== 'failed' && state !== 'completed') {
      const attempts = job.opts.attempts ?? 1;
      log.warn(`Trial ${id} attempt ${job.attemptsMade}/${attempts} failed: ${job.failedReason}; retrying after a backoff`);
    }
    if (state !== trial.state && state === 'active') log.info(`Trial ${id} running on ${job.processedBy ?? 'a worker'}`);
    if (state !== trial.state && state === 'failed') log.error(`Trial ${id} failed on ${job.processedBy ?? 'a worker'}: ${job.failedReason}`);
    trial.state = state;
    trial.attemptsMade = job.attemptsMade;
  }

  /** Writes the finished job's run folder into the runs folder (once) and returns its result. */
  private collect(job: Job<TrialJobData, TrialJobReturn>): TrialResult {
    const value = job.returnvalue;
    if (!value || !value.result || !value.run) {
      throw new Error(`Trial ${job.id} completed without a result in its return value; the worker that ran it is incompatible with this coordinator.`);
    }
    if (value.run.runId !== value.result.runId) {
      throw new Error(`Trial ${job.id} returned run ${value.result.runId} but sent the folder of run ${value.run.runId}.`);
    }
    const written = unpackRunFolder(this.options.runsDir, value.run);
    const where = path.join(this.options.runsDir, value.run.runId);
    if (written) log.info(`Trial ${job.id} complete on ${value.worker}; run recorded in ${where}`);
    else log.info(`Trial ${job.id} complete; ${where} was already recorded`);
    return value.result;
  }

  private async warnIfNoWorkers(queue: Queue<TrialJobData, TrialJobReturn>, waiting: number): Promise<void> {
    const workers = await queue.getWorkersCount();
    if (workers === 0) {
      log.warn(
        `${waiting} trial(s) waiting and no worker is connected to queue '${this.options.queueName}'. ` +
          `Start one with: clipfreeze worker --redis ${this.shownUrl} --checkpoint DIR --data DIR`,
      );
    }
  }
}

/**
 * Returns the result of a trial from its complete run folder `runsDir/<spec.id>`: test mean AUROC
 * from metrics.json, validation mean AUROC from the last epoch in history.json, and training
 * seconds and FLOPs from cost.json. A missing file gives null or 0 for its figures.
 */
export function readCompletedTrial(runsDir: string, spec: TrialSpec): TrialResult {
  const dir = path.join(runsDir, spec.id);
  const optional = <T>(file: string): T | null => (fs.existsSync(path.join(dir, file)) ? readJson<T>(path.join(dir, file)) : null);

  const metrics = optional<{ meanAuroc?: number | null }>('metrics.json');
  const history = optional<{ epochs?: Array<{ valMeanAuroc?: number | null }> }>('history.json');
  const cost = optional<{ trainSeconds?: number; flops?: number }>('cost.json');
  const summary: TrialSummary = {
    valMeanAuroc: history?.epochs?.at(-1)?.valMeanAuroc ?? null,
    testMeanAuroc: metrics?.meanAuroc ?? null,
    trainSeconds: cost?.trainSeconds ?? 0,
    flops: cost?.flops ?? 0,
  };
  return { id: spec.id, runId: spec.id, summary };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
