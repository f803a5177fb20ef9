// Trial executor that runs trials on `clipfreeze worker` processes, on this machine or others,
// through a BullMQ queue in Redis. The coordinator (this class) enqueues one job per trial with
// jobId = spec.id, so enqueueing a trial twice runs it once; shows the workers' progress; and
// writes each finished run folder into its own runs folder as a local run would leave it.
//
// A trial already complete is not run again: its finished job in Redis returns the recorded
// result, and a worker's runner reuses a complete run folder of its own.
//
// Completion is read by polling each job's state rather than from queue events, because events
// sent while the coordinator was disconnected (a Redis restart) are lost, whereas job states
// persist in Redis. Progress, where a lost event does no harm, comes from queue events.
import fs from 'node:fs';
import path from 'node:path';
import { Queue, QueueEvents, type Job } from 'bullmq';
import { moduleLog } from '../util/log.ts';
import { stableStringify } from '../util/hash.ts';
import { createErrorReporter } from './errorReporter.ts';
import { maskRedisUrl, parseRedisUrl, waitForRedis } from './redis.ts';
import { unpackRunFolder } from './runTransfer.ts';
import { DEFAULT_QUEUE_NAME, type TrialJobData, type TrialJobProgress, type TrialJobReturn } from './trialQueue.ts';
import type { TrialExecutor, TrialProgress, TrialResult, TrialSpec } from './trial.ts';

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
}

/** Age after which a finished job and its result are removed from Redis, in seconds. */
const COMPLETED_JOB_AGE_SECONDS = 30 * 24 * 3600;

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
  private connecting: Promise<Queue<TrialJobData, TrialJobReturn>> | null = null;
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
    for (const spec of specs) {
      if (!pending.has(spec.id)) pending.set(spec.id, { spec, state: 'new', attemptsMade: 0 });
    }
    const total = pending.size;

    // Enqueue, and follow progress through queue events. Several runAll calls may share this
    // executor at once (a search runs the trials of one rung side by side).
    const queue = await this.connect();
    const onProgressEvent = ({ jobId, data }: { jobId: string; data: unknown }) => {
      const trial = pending.get(jobId);
      const progress = data as Partial<TrialJobProgress>;
      // Completion is reported once, when the run folder is recorded, so a runner's own final
      // event (fraction 1) is not passed on.
      if (!trial || typeof progress?.fraction !== 'number' || progress.fraction >= 1) return;
      onProgress?.({ id: jobId, fraction: progress.fraction, message: `${progress.message ?? ''} [${progress.worker ?? 'worker'}]` });
    };
    this.events!.on('progress', onProgressEvent);
    try {
      for (const trial of pending.values()) await this.enqueue(queue, trial.spec);
      log.info(`Enqueued ${pending.size} trial(s) on queue '${this.options.queueName}' at ${this.shownUrl}`);
      await this.waitForTrials(queue, pending, results, failures, onProgress);
    } finally {
      this.events?.off('progress', onProgressEvent);
    }

    if (failures.size > 0) {
      const lines = [...failures].map(([id, reason]) => `  ${id}: ${reason}`);
      throw new Error(
        `${failures.size} of ${total} trial(s) failed (the ${results.size} finished are recorded in ${this.options.runsDir}):\n${lines.join('\n')}`,
      );
    }
    return specs.map((s) => results.get(s.id)!);
  }

  /** Polls job states until every pending trial has completed or failed for good. */
  private async waitForTrials(
    queue: Queue<TrialJobData, TrialJobReturn>,
    pending: Map<string, PendingTrial>,
    results: Map<string, TrialResult>,
    failures: Map<string, string>,
    onProgress?: (p: TrialProgress) => void,
  ): Promise<void> {
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
  }

  async close(): Promise<void> {
    const events = this.events;
    const queue = this.queue;
    this.events = null;
    this.queue = null;
    this.connecting = null;
    await events?.close();
    await queue?.close();
  }

  private connect(): Promise<Queue<TrialJobData, TrialJobReturn>> {
    this.connecting ??= this.openConnections().catch((err: Error) => {
      this.connecting = null;
      throw err;
    });
    return this.connecting;
  }

  private async openConnections(): Promise<Queue<TrialJobData, TrialJobReturn>> {
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
    await queue.add(spec.kind, { spec, ...readPlanSelection(spec) }, {
      jobId: spec.id,
      attempts: this.options.attempts,
      backoff: { type: 'exponential', delay: this.options.backoffMs },
      // A finished job keeps the packed run folder in Redis memory, so it is evicted after 30 days
      // (checked whenever another job finishes). A trial enqueued after that runs again.
      removeOnComplete: { age: COMPLETED_JOB_AGE_SECONDS },
      removeOnFail: false,
    });
  }

  /** Returns the trial's outcome once it has one, or null while it is still queued or running. */
  private async checkTrial(
    queue: Queue<TrialJobData, TrialJobReturn>,
    trial: PendingTrial,
  ): Promise<{ result: TrialResult } | { error: string } | null> {
    const id = trial.spec.id;

    // The state first, then the job: a job read before it finished has no return value yet.
    const state = await queue.getJobState(id);
    const job = state === 'unknown' ? undefined : await queue.getJob(id);
    if (!job) {
      // Redis lost the job (restarted without persistence, or flushed): add it again.
      log.warn(`Trial ${id} is no longer in Redis; enqueueing it again`);
      await this.enqueue(queue, trial.spec);
      trial.state = 'new';
      return null;
    }
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

/** Returns the selection.json that the trial's `planFrom` names (a select run folder or the file), if any. */
function readPlanSelection(spec: TrialSpec): Pick<TrialJobData, 'planSelectionJson'> {
  const planFrom = spec.config.planFrom;
  if (typeof planFrom !== 'string') return {};
  const file = fs.existsSync(planFrom) && fs.statSync(planFrom).isDirectory() ? path.join(planFrom, 'selection.json') : planFrom;
  if (!fs.existsSync(file)) {
    throw new Error(`Trial ${spec.id} trains the plan of ${planFrom}, but ${file} does not exist. Run the select step first.`);
  }
  return { planSelectionJson: fs.readFileSync(file, 'utf8') };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
