// Runs one trial in this process: a zero-shot evaluation or a training run. Both the local
// executor and a BullMQ worker call this, so a trial gives the same run folder wherever it runs.
import { runZeroShot, type ZeroShotRunOptions } from '../eval/zeroShotRun.ts';
import { trainRun } from '../train/trainer.ts';
import type { TrialProgress, TrialResult, TrialSpec } from './trial.ts';

export interface RunTrialContext {
  /** Folder of run records the trial writes into. */
  runsDir: string;
  onProgress?: (progress: TrialProgress) => void;
  signal?: AbortSignal;
}

export type TrialRunner = (spec: TrialSpec, context: RunTrialContext) => Promise<TrialResult>;

export const runTrial: TrialRunner = async (spec, context) => {
  if (spec.kind === 'zero-shot') {
    const options = { ...(spec.config as unknown as ZeroShotRunOptions), runsDir: context.runsDir };
    context.onProgress?.({ id: spec.id, fraction: 0, message: 'zero-shot evaluation' });
    const result = await runZeroShot(options);
    context.onProgress?.({ id: spec.id, fraction: 1, message: `test mean AUROC ${formatAuroc(result.metrics.meanAuroc)}` });
    return {
      id: spec.id,
      runId: result.runId,
      summary: { valMeanAuroc: null, testMeanAuroc: result.metrics.meanAuroc, trainSeconds: 0, flops: 0, imagesSeen: 0 },
    };
  }

  if (spec.kind === 'train') {
    const result = await trainRun(spec.config, {
      runsDir: context.runsDir,
      signal: context.signal,
      onProgress: (p) => context.onProgress?.({ id: spec.id, fraction: p.fraction, message: p.message }),
    });
    return {
      id: spec.id,
      runId: result.runId,
      summary: {
        valMeanAuroc: result.valMeanAuroc,
        testMeanAuroc: result.metrics?.meanAuroc ?? null,
        trainSeconds: result.cost.trainSeconds,
        flops: result.cost.flops,
        imagesSeen: result.cost.imagesSeen,
      },
    };
  }

  throw new Error(`Unknown trial kind '${(spec as TrialSpec).kind}' in trial ${spec.id}: expected 'zero-shot' or 'train'.`);
};

function formatAuroc(value: number | null): string {
  return value === null ? 'undefined' : value.toFixed(4);
}
