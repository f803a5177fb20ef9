// Marks the model variables of frozen units as not trainable for the length of a run.
//
// layers.ts matMulFast skips the weight-gradient product of a variable with
// `trainable = false`. Frozen blocks inside the gradient tape (for example blocks 9-11 when a
// plan trains only block 8 and the head) then cost only their input gradient in backward.
import type { ClipModel } from '../clip/model.ts';
import type { FreezePlan } from '../freeze/plan.ts';
import { HEAD_UNIT, layerUnits } from '../freeze/units.ts';

/**
 * Sets `trainable = false` on every model variable outside the plan's trained units and
 * returns a function that restores the previous flags (call it when the run ends).
 */
export function markFrozenVariables(model: ClipModel, plan: FreezePlan): () => void {
  const trained = new Set(plan.train);
  const previous: Array<[name: string, trainable: boolean]> = [];
  for (const unit of layerUnits(model.config)) {
    if (unit.name === HEAD_UNIT || trained.has(unit.name)) continue;
    for (const param of unit.params) {
      const variable = model.params.get(param.name);
      if (!variable) continue;
      previous.push([param.name, variable.trainable]);
      variable.trainable = false;
    }
  }
  return () => {
    for (const [name, trainable] of previous) {
      const variable = model.params.get(name);
      if (variable) variable.trainable = trainable;
    }
  };
}
