import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import type { TrialOutcome, TrialSpec } from '../../lib/strategies/search.ts';
import { runSelect } from '../../lib/strategies/selectRun.ts';
import { trainRun } from '../../lib/train/trainer.ts';
import { readJson } from '../../lib/util/atomic.ts';
import { initBackend } from '../../lib/util/backend.ts';
import { baseConfig, checkRecord, shared } from './helpers/selectConfig.ts';

test.before(async () => {
  await initBackend();
});

shared('search trains trials and writes record', async (t) => {
  const config = baseConfig({
    strategy: 'search',
    method: 'prefix',
    units: null,
    budget: { unit: 'epochs', total: 3, minBudget: 0.5, maxBudget: 1, eta: 2, initialTrials: 2 },
    settings: { train: { batchSize: 8, microBatchSize: 8, bootstrap: 10 } },
  });
  const { runDir, selection } = await runSelect(config);
  checkRecord(t, runDir, 'search');
  const trials = fs.readFileSync(path.join(runDir, 'trials.jsonl'), 'utf8').trim().split('\n');
  t.is(trials.length, 3);

  // Trials are ranked on validation AUROC, so their run records have no test evaluation.
  const trialRuns = fs.readdirSync(path.join(runDir, 'trials')).filter((name) => fs.existsSync(path.join(runDir, 'trials', name, 'complete.json')));
  t.is(trialRuns.length, 3);
  for (const name of trialRuns) {
    t.false(fs.existsSync(path.join(runDir, 'trials', name, 'metrics.json')), `${name} has no metrics.json`);
    t.false(fs.existsSync(path.join(runDir, 'trials', name, 'predictions.csv')), `${name} has no predictions.csv`);
  }

  const details = selection.details as { pareto: unknown[]; best: { budget: number } };
  t.is(details.best.budget, 1);
  t.true(details.pareto.length >= 1);

  // A second call with the same config returns the complete record without training again.
  const again = await runSelect(config);
  t.deepEqual(again.selection.plan, selection.plan);
});

shared('selected plan trains with plan-from', async (t) => {
  const config = baseConfig({ settings: { batches: 1, batchSize: 4 } });
  const { runDir, selection } = await runSelect(config);
  const trained = await trainRun(
    { checkpoint: config.checkpoint, data: config.data, planFrom: runDir, epochs: 1, batchSize: 8, microBatchSize: 8, limit: config.limit, bootstrap: 10, seed: 1 },
    { runsDir: config.runs },
  );
  const trainConfig = readJson<{ plan: { train: string[]; truncate: number } }>(path.join(trained.runDir, 'config.json'));
  t.deepEqual([...trainConfig.plan.train].sort(), [...selection.plan.train].sort());
  t.is(trainConfig.plan.truncate, selection.plan.truncate);
});

shared('search select resumes after failure', async (t) => {
  const config = baseConfig({
    strategy: 'search',
    method: 'any',
    units: null,
    budget: { unit: 'epochs', total: 16, minBudget: 1, maxBudget: 4, eta: 2, initialTrials: 2 },
  });
  // A synthetic evaluator that fails on its fifth call, as a crash in the middle of a search would.
  const score = (trial: TrialSpec): TrialOutcome => ({
    valMeanAuroc: 0.5 + trial.plan.train.length / 100 + trial.budget / 1000,
    cost: { wallSeconds: 0.01, flops: trial.plan.train.length * 1e9, imagesSeen: 10 },
  });
  let calls = 0;
  const failing = async (trial: TrialSpec): Promise<TrialOutcome> => {
    calls += 1;
    if (calls === 5) throw new Error('worker lost');
    return score(trial);
  };
  await t.throwsAsync(runSelect(config, { evaluate: failing }), { message: 'worker lost' });

  const rerun: string[] = [];
  const { runDir, selection } = await runSelect(config, {
    evaluate: async (trial) => {
      rerun.push(trial.id);
      return score(trial);
    },
  });
  const details = selection.details as { reused: number; evaluated: number; trials: number };
  t.is(details.reused, 4);
  t.is(details.evaluated, details.trials - 4);
  t.is(rerun.length, details.evaluated);
  t.true(fs.readFileSync(path.join(runDir, 'run.log'), 'utf8').includes('failed: worker lost'));
  checkRecord(t, runDir, 'search');
});
