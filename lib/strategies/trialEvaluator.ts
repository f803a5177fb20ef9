// Trial evaluators of the search. Each trial is an ordinary training run (trainRun) of the
// trial's plan on the trial's budget: in this process (recorded under the select run's trials/
// folder), or through a study trial executor. Training runs resume, so a trial killed midway
// continues from its last finished epoch.
import type { Checkpoint } from '../clip/checkpoint.ts';
import type { ClipModel } from '../clip/model.ts';
import { trialId, type TrialExecutor, type TrialSpec as StudyTrialSpec } from '../study/trial.ts';
import type { TrainConfig } from '../train/config.ts';
import { trainRun } from '../train/trainer.ts';
import type { TrialEvaluator, TrialSpec } from './search.ts';

export interface LocalTrialSettings {
  /** Training settings shared by every trial (checkpoint, data, batch sizes, lr, limits, ...). */
  base: Partial<TrainConfig> & { checkpoint: string; data: string };
  /** Folder of the trials' run records. */
  runsDir: string;
  /** Training-split size, to turn a data-fraction budget into an image limit. */
  trainImages: number;
  /** Epochs of a data-fraction trial (default 1). */
  fractionEpochs?: number;
  /** A loaded model shared by all trials; trainRun restores its weights after each run. */
  model?: { model: ClipModel; checkpoint: Checkpoint };
}

/** Returns the train config of one search trial. */
export function trialTrainConfig(trial: TrialSpec, settings: Pick<LocalTrialSettings, 'base' | 'trainImages' | 'fractionEpochs'>): Partial<TrainConfig> & { checkpoint: string; data: string } {
  const config: Partial<TrainConfig> & { checkpoint: string; data: string } = {
    ...settings.base,
    method: 'search-trial',
    trainUnits: trial.plan.train.join(','),
    truncate: trial.plan.truncate,
    seed: trial.seed,
    // Successive halving compares trials at a fixed budget, so early stopping stays off.
    patience: 0,
    // Trials are ranked on validation AUROC, so the test split stays out of the selection and
    // its evaluation time out of the trial's cost.
    evaluateTest: false,
  };
  if (trial.budgetUnit === 'epochs') {
    config.epochs = trial.budget;
  } else {
    config.epochs = settings.fractionEpochs ?? 1;
    const limit = { train: null, val: null, test: null, ...(settings.base.limit ?? {}) };
    config.limit = { ...limit, train: Math.max(1, Math.round(trial.budget * settings.trainImages)) };
  }
  return config;
}

export function localTrialEvaluator(settings: LocalTrialSettings): TrialEvaluator {
  return async (trial) => {
    const result = await trainRun(trialTrainConfig(trial, settings), { runsDir: settings.runsDir, model: settings.model });
    return {
      valMeanAuroc: result.valMeanAuroc,
      cost: {
        wallSeconds: result.cost.trainSeconds + result.cost.evalSeconds,
        flops: result.cost.flops,
        imagesSeen: result.cost.imagesSeen,
      },
    };
  };
}

export interface ExecutorTrialSettings extends Omit<LocalTrialSettings, 'model' | 'runsDir'> {
  /** SHA-256 of the checkpoint and fingerprint of the data folder; a worker with others rejects the trial. */
  checkpointSha256: string;
  dataFingerprint: string;
}

/**
 * Returns an evaluator that hands each search trial to a study trial executor (local, or a
 * BullMQ queue whose workers train on other machines) as an ordinary 'train' trial. The job id
 * is the hash of the train config, so a trial enqueued twice runs once. Run the search with
 * `concurrency` above 1 to keep several workers busy within a rung.
 */
export function executorTrialEvaluator(executor: TrialExecutor, settings: ExecutorTrialSettings): TrialEvaluator {
  return async (trial) => {
    const config = trialTrainConfig(trial, settings) as Record<string, unknown>;
    const spec: StudyTrialSpec = {
      id: trialId('train', config),
      kind: 'train',
      config,
      checkpointSha256: settings.checkpointSha256,
      dataFingerprint: settings.dataFingerprint,
    };
    const [result] = await executor.runAll([spec]);
    return {
      valMeanAuroc: result.summary.valMeanAuroc,
      // NOTE: summaries from workers older than the imagesSeen field report 0 images.
      cost: { wallSeconds: result.summary.trainSeconds, flops: result.summary.flops, imagesSeen: result.summary.imagesSeen ?? 0 },
    };
  };
}
