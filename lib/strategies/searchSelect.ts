// The search as a layer-selection strategy: runs the budgeted mask search over the model's
// vision units and turns its best trial, Pareto front and surrogate effects into a selection.
import type { ClipModel } from '../clip/model.ts';
import type { TargetDataset } from '../data/dataset.ts';
import { HEAD_UNIT, layerUnits } from '../freeze/units.ts';
import { runSearch, type SearchBudget, type SearchSettings, type TrialEvaluator } from './search.ts';
import type { MaskShape } from './searchSpace.ts';
import type { SelectionResult, Strategy } from './types.ts';

export interface SearchSelectSettings {
  shape: MaskShape;
  budget: SearchBudget;
  seed: number;
  /** Trains one trial; the in-process trainer or another executor. */
  evaluate: TrialEvaluator;
  /** Trials file for resume; null keeps trials in memory. */
  trialsFile: string | null;
  concurrency?: number;
  /** Candidate units (default: every vision unit). The task head always trains. */
  candidates?: string[];
  /** Allowed truncation depths (default [0]). */
  truncations?: number[];
  surrogate?: SearchSettings['surrogate'];
}

export async function searchSelect(model: ClipModel, dataset: TargetDataset, settings: SearchSelectSettings): Promise<SelectionResult> {
  const started = Date.now();
  const allUnits = layerUnits(model.config, dataset.findings.length);
  const candidates = settings.candidates ?? allUnits.filter((u) => u.tower === 'vision').map((u) => u.name);
  const unknown = candidates.filter((c) => !allUnits.some((u) => u.name === c));
  if (unknown.length > 0) {
    throw new Error(`Unknown search candidate unit(s): ${unknown.join(', ')}. Use unit names such as vision.block.3 (the model has ${model.config.vision.layers} vision blocks).`);
  }

  const result = await runSearch({
    space: { units: candidates, shape: settings.shape, alwaysTrain: [HEAD_UNIT], truncations: settings.truncations ?? [0], visionLayers: model.config.vision.layers },
    budget: settings.budget,
    seed: settings.seed,
    evaluate: settings.evaluate,
    trialsFile: settings.trialsFile,
    concurrency: settings.concurrency,
    surrogate: settings.surrogate,
  });
  if (!result.best) {
    throw new Error('The search finished without a trial with a defined validation mean AUROC; check that the validation split has positives for some finding.');
  }

  const scores: Record<string, number> = {};
  for (const unit of allUnits) scores[unit.name] = result.unitEffects?.[unit.name] ?? 0;
  const trialCost = result.trials.reduce(
    (c, t) => ({ wallSeconds: c.wallSeconds + t.cost.wallSeconds, flops: c.flops + t.cost.flops, imagesSeen: c.imagesSeen + t.cost.imagesSeen }),
    { wallSeconds: 0, flops: 0, imagesSeen: 0 },
  );
  return {
    plan: result.best.plan,
    scores,
    // Wall time of this call; FLOPs and images of every trial, including trials finished before a restart.
    cost: { wallSeconds: (Date.now() - started) / 1000, flops: trialCost.flops, imagesSeen: trialCost.imagesSeen },
    details: {
      shape: settings.shape,
      budget: settings.budget,
      best: { trialId: result.best.id, valMeanAuroc: result.best.valMeanAuroc, budget: result.best.budget },
      pareto: result.pareto,
      paretoCost: result.paretoCost,
      brackets: result.brackets,
      trials: result.trials.length,
      evaluated: result.evaluated,
      reused: result.reused,
      spentBudget: result.spent,
      trialsWallSeconds: trialCost.wallSeconds,
      candidates,
      unitEffects: result.unitEffects,
      unscored: allUnits.filter((u) => !candidates.includes(u.name)).map((u) => u.name),
    },
  };
}

/** The strategy under the common Strategy type, for callers that hold strategies by name. */
export const searchStrategy: Strategy<SearchSelectSettings> = searchSelect;
