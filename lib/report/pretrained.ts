// Decides whether a study used a pretrained CLIP checkpoint. Numbers from a randomly
// initialised model (such as the clip-mini test fixture) do not measure CLIP, so the report
// puts a warning at the top. The rules, first match wins:
//
//   1. `pretrained: false` in the study config or in any run's config.json  -> not pretrained
//   2. a checkpoint path whose folder or file name contains 'clip-mini'     -> not pretrained
//   3. `pretrained: true` in the study config or in every run's config.json  -> pretrained
//   4. otherwise                                                             -> pretrained, unverified
import path from 'node:path';
import type { LoadedRun } from './load.ts';

export interface PretrainedVerdict {
  pretrained: boolean;
  /** Why, in one sentence for the report. */
  reason: string;
}

/** Applies the rules above to the study config (may be null) and the loaded runs. */
export function checkPretrained(study: Record<string, unknown> | null, runs: LoadedRun[]): PretrainedVerdict {
  const configs = [...(study ? [study] : []), ...runs.map((r) => r.config)];

  if (configs.some((c) => c.pretrained === false)) {
    return { pretrained: false, reason: "The study config marks the checkpoint as not pretrained ('pretrained: false')." };
  }

  const checkpoints = [...new Set(configs.map((c) => c.checkpoint).filter((c): c is string => typeof c === 'string'))];
  const fixture = checkpoints.find((c) => c.split(path.sep).some((part) => part.includes('clip-mini')));
  if (fixture !== undefined) {
    return { pretrained: false, reason: `The checkpoint path ${fixture} names the clip-mini test fixture, a randomly initialised model.` };
  }

  if (configs.length > 0 && (study?.pretrained === true || configs.every((c) => c.pretrained === true))) {
    return { pretrained: true, reason: "The study config marks the checkpoint as pretrained ('pretrained: true')." };
  }
  return { pretrained: true, reason: "No config sets 'pretrained'; the checkpoint is taken to be pretrained." };
}
