// A synthetic search objective with a planted optimum: additive per-unit effects plus two
// pairwise terms, a budget penalty that shrinks with more epochs, and deterministic noise.
import { createHash } from 'node:crypto';
import type { SearchSettings, TrialOutcome, TrialSpec } from '../../../lib/strategies/search.ts';

export const UNITS = ['u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7'];
const EFFECTS = [-0.02, 0.03, -0.01, 0.04, -0.03, 0.02, -0.015, 0.05];
/** The mask that maximises the objective: every unit with a positive effect, and nothing else. */
export const PLANTED_BEST = '01010101';

function noise(key: string): number {
  const bytes = createHash('sha256').update(key).digest();
  return bytes.readUInt32BE(0) / 2 ** 32 - 0.5;
}

export function objective(mask: string, budget: number): number {
  let value = 0.7 - 0.1 / budget;
  for (let i = 0; i < UNITS.length; i++) if (mask[i] === '1') value += EFFECTS[i];
  if (mask[1] === '1' && mask[3] === '1') value += 0.01;
  if (mask[5] === '1' && mask[7] === '1') value -= 0.005;
  return value + (0.01 * noise(`${mask}@${budget}`)) / budget;
}

export function syntheticOutcome(trial: TrialSpec): TrialOutcome {
  const trained = [...trial.mask].filter((b) => b === '1').length;
  return {
    valMeanAuroc: objective(trial.mask, trial.budget),
    cost: { wallSeconds: 0.01, flops: (trained + 1) * trial.budget * 1e9, imagesSeen: 100 * trial.budget },
  };
}

export function syntheticSettings(overrides: Partial<SearchSettings> = {}): SearchSettings {
  return {
    space: { units: UNITS, shape: 'any', alwaysTrain: ['head'], truncations: [0], visionLayers: 12 },
    budget: { unit: 'epochs', total: 120, minBudget: 1, maxBudget: 4, eta: 2, initialTrials: 8 },
    seed: 7,
    trialsFile: null,
    evaluate: async (trial) => syntheticOutcome(trial),
    ...overrides,
  };
}
