// A trial is one run that a study or a search needs: a zero-shot evaluation or a training run
// with a given config. Trials are independent, so an executor may run them in this process
// (local) or on other machines (bullmq). Either way the finished run folder ends up in the
// coordinator's runs directory.
import { sha256Json } from '../util/hash.ts';

export type TrialKind = 'zero-shot' | 'train';

export interface TrialSpec {
  /** Hash of kind and config: the run id locally and the job id on a queue, so a trial never runs twice. */
  id: string;
  kind: TrialKind;
  /** The run's config, as its runner takes it (zero-shot or train config). */
  config: Record<string, unknown>;
  /** SHA-256 of the checkpoint file(s); a worker with another checkpoint rejects the trial. */
  checkpointSha256: string;
  /** Fingerprint of the target data (label file and image list); a worker with other data rejects the trial. */
  dataFingerprint: string;
}

export interface TrialResult {
  id: string;
  /** Folder name of the finished run record under the runs directory. */
  runId: string;
  /** Figures the study and the search read without opening the run folder. */
  summary: TrialSummary;
}

export interface TrialSummary {
  valMeanAuroc: number | null;
  /** Null for a training run with test evaluation off (a search trial). */
  testMeanAuroc: number | null;
  trainSeconds: number;
  flops: number;
  /** Training images processed (cost.json imagesSeen). Absent from summaries of older workers. */
  imagesSeen?: number;
}

export interface TrialProgress {
  id: string;
  /** Fraction done in [0, 1]. */
  fraction: number;
  message: string;
}

export interface TrialExecutor {
  readonly name: string;
  /** Runs every trial (skipping ones already complete) and returns results in the order of `specs`. */
  runAll(specs: TrialSpec[], onProgress?: (p: TrialProgress) => void): Promise<TrialResult[]>;
  close(): Promise<void>;
}

export function trialId(kind: TrialKind, config: Record<string, unknown>): string {
  return `${kind}-${sha256Json({ kind, config }).slice(0, 16)}`;
}
