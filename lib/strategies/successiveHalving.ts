// Successive halving (Jamieson and Talwalkar 2016; the inner loop of Hyperband, Li et al. 2017):
// evaluate many configurations on a small budget (epochs or a fraction of the training data),
// keep the best 1/eta, evaluate them on eta times the budget, and repeat up to the full budget.

/** One rung of a bracket: how many configurations run, and on what budget each. */
export interface Rung {
  budget: number;
  count: number;
}

export interface BracketSettings {
  /** Budget of the first rung (epochs, or a training-data fraction in (0, 1]). */
  minBudget: number;
  /** Budget of the last rung. */
  maxBudget: number;
  /** Factor between rungs: budget grows and the configuration count shrinks by it (default 3, as in Hyperband). */
  eta: number;
}

/**
 * Plans the rungs of a bracket that starts with `initialCount` configurations: budgets minBudget,
 * minBudget*eta, ... capped at maxBudget, counts divided by eta each rung and never below 1.
 */
export function planBracket(initialCount: number, settings: BracketSettings): Rung[] {
  const { minBudget, maxBudget, eta } = settings;
  if (!(minBudget > 0) || !(maxBudget >= minBudget)) {
    throw new Error(`Invalid successive-halving budgets: min ${minBudget}, max ${maxBudget}. Use 0 < min <= max.`);
  }
  if (!(eta > 1)) throw new Error(`Invalid successive-halving eta ${eta}; use a number above 1 (2 or 3 is usual).`);
  if (!Number.isInteger(initialCount) || initialCount < 1) {
    throw new Error(`Invalid number of configurations per bracket: ${initialCount}; use an integer of at least 1.`);
  }

  const rungs: Rung[] = [];
  let budget = minBudget;
  let count = initialCount;
  for (;;) {
    const last = budget >= maxBudget * (1 - 1e-9);
    rungs.push({ budget: last ? maxBudget : budget, count });
    if (last) break;
    budget = Math.min(budget * eta, maxBudget);
    count = Math.max(Math.floor(count / eta), 1);
  }
  return rungs;
}

/** Total budget a bracket spends: sum over rungs of count * budget. */
export function bracketCost(rungs: Rung[]): number {
  return rungs.reduce((s, r) => s + r.count * r.budget, 0);
}

/**
 * Returns the largest initial count whose bracket costs at most `available`, or 0 when not even
 * one configuration fits through every rung.
 */
export function largestAffordableCount(preferred: number, settings: BracketSettings, available: number): number {
  for (let n = preferred; n >= 1; n--) {
    if (bracketCost(planBracket(n, settings)) <= available * (1 + 1e-9)) return n;
  }
  return 0;
}

export interface RungEntry<C> {
  config: C;
  /** Validation score; null when the trial produced no defined score (ranked last). */
  value: number | null;
}

/**
 * Runs one bracket. `evaluateRung` evaluates a whole rung (so an executor may run its trials in
 * parallel) and returns one value per configuration, in order. Promotion keeps the best `count`
 * of the next rung, ties broken by the earlier position, so the outcome does not depend on the
 * order in which parallel trials finish.
 */
export async function runBracket<C>(
  configs: C[],
  rungs: Rung[],
  evaluateRung: (configs: C[], rungIndex: number, budget: number) => Promise<Array<number | null>>,
): Promise<Array<{ budget: number; entries: Array<RungEntry<C>> }>> {
  if (configs.length !== rungs[0].count) {
    throw new Error(`A bracket whose first rung has ${rungs[0].count} configurations was given ${configs.length}.`);
  }
  const results: Array<{ budget: number; entries: Array<RungEntry<C>> }> = [];
  let current = configs;
  for (let r = 0; r < rungs.length; r++) {
    const values = await evaluateRung(current, r, rungs[r].budget);
    const entries = current.map((config, i) => ({ config, value: values[i] }));
    results.push({ budget: rungs[r].budget, entries });
    if (r + 1 < rungs.length) current = topEntries(entries, rungs[r + 1].count).map((e) => e.config);
  }
  return results;
}

/** Returns the `count` best entries by value (null last), ties by position. */
export function topEntries<C>(entries: Array<RungEntry<C>>, count: number): Array<RungEntry<C>> {
  const ranked = entries.map((entry, index) => ({ entry, index }));
  ranked.sort((a, b) => rankValue(b.entry.value) - rankValue(a.entry.value) || a.index - b.index);
  return ranked.slice(0, count).map((r) => r.entry);
}

function rankValue(value: number | null): number {
  return value === null || Number.isNaN(value) ? Number.NEGATIVE_INFINITY : value;
}
