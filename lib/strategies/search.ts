// Budgeted search over freeze masks. Each bracket proposes configurations (a mask over the
// candidate units and a truncation depth) and spends its budget by successive halving over
// epochs or training-data fractions. The first bracket's configurations are drawn at random.
// Later ones are ranked by the upper confidence bound of a ridge surrogate fitted to every
// finished trial, and a share is still drawn at random so the search keeps exploring.
//
// Decisions depend only on the seed and on finished trial results, never on timing, so a
// search repeats exactly. Every finished trial is written to the trials file at once, and a
// resumed search replays the same decisions, reading recorded trials instead of re-running them.
//
// Trials are run through one function type, `TrialEvaluator`, so another executor (child
// processes, a job queue) can replace the in-process one.
import type { FreezePlan } from '../freeze/plan.ts';
import { moduleLog } from '../util/log.ts';
import { createProgress } from '../util/progress.ts';
import { createRng, shuffleInPlace, type Rng } from '../util/rng.ts';
import {
  configKey,
  enumerateConfigs,
  normaliseConfig,
  planOf,
  sampleConfig,
  trainedUnits,
  validateSpace,
  type SearchSpace,
} from './searchSpace.ts';
import { bracketCost, largestAffordableCount, planBracket, runBracket, type BracketSettings } from './successiveHalving.ts';
import { RidgeSurrogate, type MaskConfig, type SurrogateOptions } from './surrogate.ts';
import { TrialsFile, type TrialRecord } from './trialsFile.ts';
import type { SelectionCost } from './types.ts';

const logger = moduleLog('search');

export type BudgetUnit = 'epochs' | 'fraction';

export interface SearchBudget extends BracketSettings {
  /** Unit of a trial's budget: training epochs, or the fraction of the training split used. */
  unit: BudgetUnit;
  /** Total budget of the search: the sum of every trial's budget (epochs, or data fractions). */
  total: number;
  /** Configurations in a bracket's first rung (default eta^(rungs-1), at least 2). */
  initialTrials?: number;
}

/** One trial to run: train `plan` for `budget` and report validation mean AUROC and cost. */
export interface TrialSpec {
  /** `<config key>@<budget>`: the same configuration on the same budget is one trial. */
  id: string;
  /** Position in the search's deterministic trial order. */
  index: number;
  bracket: number;
  rung: number;
  mask: string;
  truncate: number;
  /** Trained candidate units (the mask's 1 bits), for readers of the trials file. */
  units: string[];
  plan: FreezePlan;
  budget: number;
  budgetUnit: BudgetUnit;
  seed: number;
}

export interface TrialOutcome {
  valMeanAuroc: number | null;
  cost: SelectionCost;
}

/** Runs one trial. The local executor trains in this process; a queue-backed one can replace it. */
export type TrialEvaluator = (trial: TrialSpec) => Promise<TrialOutcome>;

export interface SearchSettings {
  space: SearchSpace;
  budget: SearchBudget;
  seed: number;
  evaluate: TrialEvaluator;
  /** JSON-lines file of finished trials; null keeps them in memory only (no resume). */
  trialsFile: string | null;
  /** Trials of one rung run at most this many at a time (default 1). */
  concurrency?: number;
  surrogate?: SurrogateOptions & {
    /** Weight of the predictive standard deviation in the upper confidence bound (default 1). */
    exploration?: number;
    /** Share of each later bracket drawn at random instead of from the surrogate (default 0.25). */
    randomFraction?: number;
  };
}

export interface ParetoPoint {
  trialId: string;
  plan: FreezePlan;
  valMeanAuroc: number;
  cost: number;
}

export interface SearchResult {
  /** Best trial on the largest budget reached, or null when no trial has a defined AUROC. */
  best: TrialRecord | null;
  /** Trials on that budget that no other trial beats on both validation AUROC and cost, by increasing cost. */
  pareto: ParetoPoint[];
  /** `flops` when every trial on that budget reported FLOPs, otherwise `wallSeconds`. */
  paretoCost: 'flops' | 'wallSeconds';
  trials: TrialRecord[];
  brackets: number;
  /** Budget spent, in budget units, including trials read back from the trials file. */
  spent: number;
  /** Trials run by this call, and trials read back from the trials file. */
  evaluated: number;
  reused: number;
  /** Additive effect of training each candidate unit, from the final surrogate fit. */
  unitEffects: Record<string, number> | null;
}

/** Pool size when the space is too large to enumerate. */
const SAMPLED_POOL = 2048;

export async function runSearch(settings: SearchSettings): Promise<SearchResult> {
  const { space, budget, seed } = settings;
  validateSpace(space);
  validateBudget(budget);
  const rng = createRng(seed);
  const trials = new TrialsFile(settings.trialsFile);
  if (trials.size > 0) logger.info(`Resuming search: ${trials.size} finished trials in ${settings.trialsFile}`);

  const firstRungs = planBracket(1, budget);
  const preferred = budget.initialTrials ?? Math.max(Math.ceil(budget.eta ** (firstRungs.length - 1)), 2);
  const pool = enumerateConfigs(space);
  const tried = new Set<string>();
  const counters = { index: 0, evaluated: 0, reused: 0 };
  // Trials this call has run or replayed so far. The surrogate is fitted to these only, so a resumed
  // search makes the same proposals as the original even though the file contains later trials.
  const seen = new Map<string, TrialRecord>();
  const progress = createProgress('search', budget.total);

  let spent = 0;
  let bracket = 0;
  for (;;) {
    const count = largestAffordableCount(preferred, budget, budget.total - spent);
    if (count === 0) break;
    const configs = proposeConfigs(count, bracket, { space, pool, tried, rng, seen, settings });
    if (configs.length === 0) {
      logger.info('Every configuration of the search space has been tried; stopping early.');
      break;
    }
    for (const c of configs) tried.add(configKey(c));

    const rungs = planBracket(configs.length, budget);
    logger.info(`Bracket ${bracket}: ${rungs.map((r) => `${r.count} x ${r.budget} ${budget.unit}`).join(', ')}`);
    const bracketIndex = bracket;
    await runBracket(configs, rungs, (rungConfigs, rung, rungBudget) =>
      evaluateRung(rungConfigs, { bracket: bracketIndex, rung, budget: rungBudget }, { settings, trials, seen, counters, progress }),
    );
    spent += bracketCost(rungs);
    bracket += 1;
  }
  progress.stop();

  const unused = trials.size - seen.size;
  if (unused > 0) {
    logger.warn(`${unused} trials in ${settings.trialsFile} were not part of this search (another seed, space or budget?) and are ignored.`);
  }
  return summarise(sortedByIndex(seen), space, settings, { brackets: bracket, spent, ...counters });
}

interface ProposalContext {
  space: SearchSpace;
  pool: MaskConfig[] | null;
  tried: Set<string>;
  rng: Rng;
  seen: Map<string, TrialRecord>;
  settings: SearchSettings;
}

/** Proposes up to `count` untried configurations: random in bracket 0, mostly from the surrogate afterwards. */
function proposeConfigs(count: number, bracket: number, context: ProposalContext): MaskConfig[] {
  const { space, tried, rng, settings } = context;
  const candidates = candidatePool(context);
  if (candidates.length === 0) return [];

  const randomFraction = settings.surrogate?.randomFraction ?? 0.25;
  const observations = observationsOf(sortedByIndex(context.seen));
  const useSurrogate = bracket > 0 && observations.length > 0;
  const fromSurrogate = useSurrogate ? Math.min(count - Math.round(count * randomFraction), candidates.length) : 0;

  const chosen: MaskConfig[] = [];
  if (fromSurrogate > 0) {
    const surrogate = new RidgeSurrogate(space.units.length, settings.surrogate);
    surrogate.fit(observations);
    const exploration = settings.surrogate?.exploration ?? 1;
    const scored = candidates.map((config) => ({ config, key: configKey(config), score: surrogate.acquisition(config, exploration) }));
    scored.sort((a, b) => b.score - a.score || (a.key < b.key ? -1 : 1));
    for (const s of scored.slice(0, fromSurrogate)) chosen.push(s.config);
  }

  const chosenKeys = new Set(chosen.map(configKey));
  const rest = shuffleInPlace(
    candidates.filter((c) => !chosenKeys.has(configKey(c)) && !tried.has(configKey(c))),
    rng,
  );
  for (const config of rest) {
    if (chosen.length >= count) break;
    chosen.push(config);
  }
  return chosen;
}

/** Untried configurations: the whole space when it is small enough, otherwise a seeded sample. */
function candidatePool(context: ProposalContext): MaskConfig[] {
  const { space, pool, tried, rng } = context;
  if (pool) return pool.filter((c) => !tried.has(configKey(c)));

  const sampled = new Map<string, MaskConfig>();
  for (let attempt = 0; attempt < SAMPLED_POOL * 4 && sampled.size < SAMPLED_POOL; attempt++) {
    const config = normaliseConfig(space, sampleConfig(space, rng));
    const key = configKey(config);
    if (!tried.has(key)) sampled.set(key, config);
  }
  return [...sampled.keys()].sort().map((k) => sampled.get(k)!);
}

function sortedByIndex(records: Map<string, TrialRecord>): TrialRecord[] {
  return [...records.values()].sort((a, b) => a.index - b.index);
}

function observationsOf(records: TrialRecord[]): Array<MaskConfig & { budget: number; value: number }> {
  return records
    .filter((r) => r.valMeanAuroc !== null && Number.isFinite(r.valMeanAuroc))
    .map((r) => ({ mask: r.mask, truncate: r.truncate, budget: r.budget, value: r.valMeanAuroc as number }));
}

interface RungContext {
  settings: SearchSettings;
  trials: TrialsFile;
  seen: Map<string, TrialRecord>;
  counters: { index: number; evaluated: number; reused: number };
  progress: ReturnType<typeof createProgress>;
}

/** Runs (or reads back) the trials of one rung, at most `concurrency` at a time, and returns their validation AUROCs in order. */
async function evaluateRung(
  configs: MaskConfig[],
  position: { bracket: number; rung: number; budget: number },
  context: RungContext,
): Promise<Array<number | null>> {
  const { settings, trials, seen, counters, progress } = context;
  const specs: TrialSpec[] = configs.map((config) => ({
    id: `${configKey(config)}@${position.budget}`,
    index: counters.index++,
    bracket: position.bracket,
    rung: position.rung,
    mask: config.mask,
    truncate: config.truncate,
    units: trainedUnits(settings.space, config),
    plan: planOf(settings.space, config),
    budget: position.budget,
    budgetUnit: settings.budget.unit,
    seed: settings.seed,
  }));

  const pending = specs.filter((spec) => {
    const recorded = trials.get(spec.id);
    if (!recorded) return true;
    if (recorded.mask !== spec.mask || recorded.truncate !== spec.truncate || recorded.budget !== spec.budget) {
      throw new Error(`Trial ${spec.id} in ${settings.trialsFile} does not match the search's trial; the file belongs to another search.`);
    }
    seen.set(spec.id, recorded);
    counters.reused += 1;
    progress.tick(spec.budget, { reused: spec.id });
    return false;
  });

  const concurrency = Math.max(1, settings.concurrency ?? 1);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < pending.length) {
      const spec = pending[next++];
      const outcome = await settings.evaluate(spec);
      const { seed: _seed, ...fields } = spec;
      const record: TrialRecord = {
        ...fields,
        valMeanAuroc: outcome.valMeanAuroc,
        cost: outcome.cost,
        finishedAt: new Date().toISOString(),
      };
      trials.append(record);
      seen.set(record.id, record);
      counters.evaluated += 1;
      logger.info(
        `Trial ${spec.index} (bracket ${spec.bracket}, rung ${spec.rung}): train ${spec.plan.train.join(',') || 'nothing'}, ` +
          `truncate ${spec.truncate}, ${spec.budget} ${spec.budgetUnit}: val mean AUROC ${formatAuroc(outcome.valMeanAuroc)} ` +
          `(${outcome.cost.wallSeconds.toFixed(1)} s)`,
      );
      progress.tick(spec.budget, { auroc: formatAuroc(outcome.valMeanAuroc) });
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, pending.length) }, worker));

  return specs.map((spec) => trials.get(spec.id)!.valMeanAuroc);
}

function summarise(
  records: TrialRecord[],
  space: SearchSpace,
  settings: SearchSettings,
  totals: { brackets: number; spent: number; evaluated: number; reused: number },
): SearchResult {
  const defined = records.filter((r) => r.valMeanAuroc !== null && Number.isFinite(r.valMeanAuroc));
  const topBudget = defined.reduce((m, r) => Math.max(m, r.budget), Number.NEGATIVE_INFINITY);
  const final = defined.filter((r) => r.budget === topBudget);
  const paretoCost = final.length > 0 && final.every((r) => r.cost.flops > 0) ? 'flops' : 'wallSeconds';
  const costOf = (r: TrialRecord): number => r.cost[paretoCost];

  // Best: highest AUROC, then lower cost, then earlier trial.
  const ranked = [...final].sort((a, b) => (b.valMeanAuroc as number) - (a.valMeanAuroc as number) || costOf(a) - costOf(b) || a.index - b.index);

  // Pareto front: sweep by increasing cost and keep each trial that beats every cheaper one.
  const byCost = [...final].sort((a, b) => costOf(a) - costOf(b) || (b.valMeanAuroc as number) - (a.valMeanAuroc as number) || a.index - b.index);
  const pareto: ParetoPoint[] = [];
  let bestSoFar = Number.NEGATIVE_INFINITY;
  for (const r of byCost) {
    if ((r.valMeanAuroc as number) > bestSoFar) {
      pareto.push({ trialId: r.id, plan: r.plan, valMeanAuroc: r.valMeanAuroc as number, cost: costOf(r) });
      bestSoFar = r.valMeanAuroc as number;
    }
  }

  let unitEffects: Record<string, number> | null = null;
  const observations = observationsOf(records);
  if (observations.length > 0) {
    const surrogate = new RidgeSurrogate(space.units.length, settings.surrogate);
    surrogate.fit(observations);
    const effects = surrogate.unitEffects(observations);
    unitEffects = Object.fromEntries(space.units.map((u, i) => [u, effects[i]]));
  }

  return { best: ranked[0] ?? null, pareto, paretoCost, trials: records, unitEffects, ...totals };
}

function validateBudget(budget: SearchBudget): void {
  if (budget.unit !== 'epochs' && budget.unit !== 'fraction') {
    throw new Error(`Invalid budget unit '${budget.unit}'. Allowed values: epochs, fraction.`);
  }
  if (budget.unit === 'fraction' && budget.maxBudget > 1) {
    throw new Error(`Invalid maximum budget ${budget.maxBudget} for unit 'fraction': a data fraction is at most 1.`);
  }
  const oneTrial = bracketCost(planBracket(1, budget));
  if (!(budget.total >= oneTrial)) {
    throw new Error(
      `The search budget ${budget.total} ${budget.unit} is too small: one configuration through every rung costs ${oneTrial}. ` +
        'Raise the total or lower the maximum budget.',
    );
  }
}

function formatAuroc(value: number | null): string {
  return value === null ? 'undefined' : value.toFixed(4);
}
