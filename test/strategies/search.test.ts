import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runSearch, type TrialSpec } from '../../lib/strategies/search.ts';
import { bracketCost, planBracket } from '../../lib/strategies/successiveHalving.ts';
import { PROJECT_ROOT } from '../helpers/shared.ts';
import { PLANTED_BEST, syntheticOutcome, syntheticSettings } from './helpers/synthetic.ts';

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-search-'));
}

function trialLines(file: string): string[] {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '');
}

test('search finds planted best mask', async (t) => {
  const result = await runSearch(syntheticSettings());
  t.is(result.best?.mask, PLANTED_BEST);
  t.is(result.best?.budget, 4);
  t.deepEqual(result.best?.plan.train, ['u1', 'u3', 'u5', 'u7', 'head']);
});

test('search stays within its budget', async (t) => {
  const settings = syntheticSettings();
  const result = await runSearch(settings);
  const used = result.trials.reduce((s, r) => s + r.budget, 0);
  t.true(used <= settings.budget.total, `used ${used} of ${settings.budget.total}`);
  t.is(used, result.spent);
  t.is(result.evaluated, result.trials.length);
});

test('search repeats with same seed', async (t) => {
  const first = await runSearch(syntheticSettings());
  const second = await runSearch(syntheticSettings());
  t.deepEqual(
    second.trials.map((r) => [r.id, r.valMeanAuroc]),
    first.trials.map((r) => [r.id, r.valMeanAuroc]),
  );
});

test('search differs with another seed', async (t) => {
  const first = await runSearch(syntheticSettings());
  const other = await runSearch(syntheticSettings({ seed: 8 }));
  t.notDeepEqual(
    other.trials.map((r) => r.id),
    first.trials.map((r) => r.id),
  );
});

test('search result independent of concurrency', async (t) => {
  const sequential = await runSearch(syntheticSettings());
  // Trials finish out of order: later trials of a rung return first.
  const parallel = await runSearch(
    syntheticSettings({
      concurrency: 3,
      evaluate: async (trial) => {
        await new Promise((resolve) => setTimeout(resolve, (7 - (trial.index % 7)) * 2));
        return syntheticOutcome(trial);
      },
    }),
  );
  t.deepEqual(
    parallel.trials.map((r) => r.id),
    sequential.trials.map((r) => r.id),
  );
});

test('search Pareto front is non-dominated', async (t) => {
  const result = await runSearch(syntheticSettings());
  t.is(result.paretoCost, 'flops');
  t.true(result.pareto.length >= 1);
  for (let i = 1; i < result.pareto.length; i++) {
    t.true(result.pareto[i].cost > result.pareto[i - 1].cost, 'cost increases along the front');
    t.true(result.pareto[i].valMeanAuroc > result.pareto[i - 1].valMeanAuroc, 'AUROC increases along the front');
  }
  const final = result.trials.filter((r) => r.budget === 4);
  for (const point of result.pareto) {
    const dominated = final.some((r) => r.cost.flops <= point.cost && (r.valMeanAuroc as number) > point.valMeanAuroc);
    t.false(dominated, `${point.trialId} is dominated`);
  }
  t.is(result.pareto.at(-1)?.trialId, result.best?.id);
});

test('search unit effects recover signs', async (t) => {
  const result = await runSearch(syntheticSettings());
  const effects = result.unitEffects!;
  t.true(effects.u7 > 0, `u7 effect ${effects.u7}`);
  t.true(effects.u4 < 0, `u4 effect ${effects.u4}`);
});

test('search resumes after kill without re-running', async (t) => {
  const dir = tempDir();
  const file = path.join(dir, 'trials.jsonl');
  const child = spawn(process.execPath, ['--import=tsx', path.join('test', 'strategies', 'helpers', 'runSyntheticSearch.ts'), file], {
    cwd: PROJECT_ROOT,
    stdio: 'ignore',
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const deadline = Date.now() + 30_000;
  while (trialLines(file).length < 10 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  child.kill('SIGKILL');
  await exited;

  const beforeResume = trialLines(file).map((line) => JSON.parse(line).id as string);
  t.true(beforeResume.length >= 10, `the child wrote ${beforeResume.length} trials before the kill`);
  const rerun: string[] = [];
  const resumed = await runSearch(
    syntheticSettings({
      trialsFile: file,
      evaluate: async (trial: TrialSpec) => {
        rerun.push(trial.id);
        return syntheticOutcome(trial);
      },
    }),
  );
  const uninterrupted = await runSearch(syntheticSettings());

  t.deepEqual(
    rerun.filter((id) => beforeResume.includes(id)),
    [],
  );
  t.is(resumed.reused, beforeResume.length);
  t.deepEqual(
    resumed.trials.map((r) => [r.id, r.valMeanAuroc]),
    uninterrupted.trials.map((r) => [r.id, r.valMeanAuroc]),
  );
  t.is(trialLines(file).length, uninterrupted.trials.length);
});

test('search window shape trains contiguous units', async (t) => {
  const result = await runSearch(syntheticSettings({ space: { units: ['u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7'], shape: 'window', alwaysTrain: [], truncations: [0], visionLayers: 12 } }));
  for (const r of result.trials) t.regex(r.mask, /^0*1*0*$/, `mask ${r.mask}`);
});

test('search truncation clears cut-off blocks', async (t) => {
  const units = ['vision.block.0', 'vision.block.1', 'vision.block.2', 'vision.head'];
  const result = await runSearch(
    syntheticSettings({
      space: { units, shape: 'any', alwaysTrain: ['head'], truncations: [0, 1], visionLayers: 3 },
      budget: { unit: 'epochs', total: 40, minBudget: 1, maxBudget: 4, eta: 2, initialTrials: 4 },
    }),
  );
  const truncated = result.trials.filter((r) => r.truncate === 1);
  t.true(truncated.length > 0, 'some trials truncate');
  for (const r of truncated) t.false(r.plan.train.includes('vision.block.2'), `trial ${r.id} trains a cut-off block`);
});

test('search rejects too small budget', async (t) => {
  await t.throwsAsync(runSearch(syntheticSettings({ budget: { unit: 'epochs', total: 5, minBudget: 1, maxBudget: 4, eta: 2 } })), {
    message: /search budget 5 epochs is too small: one configuration through every rung costs 7/,
  });
});

test('bracket halves count per rung', (t) => {
  const rungs = planBracket(9, { minBudget: 1, maxBudget: 9, eta: 3 });
  t.deepEqual(rungs, [
    { budget: 1, count: 9 },
    { budget: 3, count: 3 },
    { budget: 9, count: 1 },
  ]);
  t.is(bracketCost(rungs), 27);
});

test('bracket plans data fractions', (t) => {
  const rungs = planBracket(4, { minBudget: 0.25, maxBudget: 1, eta: 2 });
  t.deepEqual(
    rungs.map((r) => [r.budget, r.count]),
    [
      [0.25, 4],
      [0.5, 2],
      [1, 1],
    ],
  );
});
