// The protocol between the coordinator (BullmqExecutor) and the workers: the queue name, the
// job's data and return value, and the timing of job locks.
import type { TrialResult, TrialSpec } from './trial.ts';
import type { RunFolderPayload } from './runTransfer.ts';

export const DEFAULT_QUEUE_NAME = 'clipfreeze-trials';

/** Job data: the trial to run. The job id is spec.id, so adding the same trial twice adds one job. */
export interface TrialJobData {
  spec: TrialSpec;
  /**
   * Content of the selection.json that the config's `planFrom` names. A worker on another
   * machine has no copy of the coordinator's select run, so the plan travels with the job.
   */
  planSelectionJson?: string;
}

/** Job return value: the trial's result and its packed run folder. */
export interface TrialJobReturn {
  result: TrialResult;
  run: RunFolderPayload;
  /** Worker name (host and process id) that ran the trial. */
  worker: string;
}

/** Job progress as the worker stores it with job.updateProgress. */
export interface TrialJobProgress {
  fraction: number;
  message: string;
  worker: string;
}

/**
 * Job lock timing. The trial runs in a child process, so the worker's event loop stays free to
 * renew its lock every lockDuration/2. A worker that dies stops renewing, so its lock expires
 * after at most lockDuration. The next stalled-job check (every stalledInterval, run by any live
 * worker) then puts the trial back in the queue. Another worker therefore starts it within about
 * lockDuration + stalledInterval (90 s with these defaults). A trial may stall maxStalledCount
 * times before it fails.
 */
export const DEFAULT_LOCK_TIMING = {
  lockDurationMs: 60_000,
  stalledIntervalMs: 30_000,
  maxStalledCount: 3,
};

export type LockTiming = typeof DEFAULT_LOCK_TIMING;
