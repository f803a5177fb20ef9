import test from 'ava';
import { LocalExecutor } from '../../lib/study/localExecutor.ts';
import type { TrialSpec as StudyTrialSpec } from '../../lib/study/trial.ts';
import { runSearch, type TrialSpec } from '../../lib/strategies/search.ts';
import { executorTrialEvaluator, trialTrainConfig } from '../../lib/strategies/trialEvaluator.ts';
import { objective, syntheticSettings } from './helpers/synthetic.ts';

const base = { checkpoint: 'ckpt', data: 'data', batchSize: 8, limit: { train: 100, val: 20, test: 20 } };

function trial(overrides: Partial<TrialSpec>): TrialSpec {
  return {
    id: 't0:0101@2',
    index: 0,
    bracket: 0,
    rung: 0,
    mask: '0101',
    truncate: 1,
    units: ['u1', 'u3'],
    plan: { train: ['u1', 'u3', 'head'], truncate: 1 },
    budget: 2,
    budgetUnit: 'epochs',
    seed: 4,
    ...overrides,
  };
}

test('trial config sets epochs budget', (t) => {
  const config = trialTrainConfig(trial({}), { base, trainImages: 100 });
  t.is(config.epochs, 2);
  t.is(config.trainUnits, 'u1,u3,head');
  t.is(config.truncate, 1);
  t.is(config.seed, 4);
  t.is(config.patience, 0);
});

test('trial config sets data fraction', (t) => {
  const config = trialTrainConfig(trial({ budget: 0.25, budgetUnit: 'fraction' }), { base, trainImages: 80, fractionEpochs: 2 });
  t.is(config.epochs, 2);
  t.deepEqual(config.limit, { train: 20, val: 20, test: 20 });
});

test('executor evaluator runs search trials', async (t) => {
  const seen: StudyTrialSpec[] = [];
  // A runner that scores the trained units with the synthetic objective instead of training.
  const executor = new LocalExecutor('unused', async (spec) => {
    seen.push(spec);
    const units = String(spec.config.trainUnits).split(',');
    const mask = ['u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7'].map((u) => (units.includes(u) ? '1' : '0')).join('');
    return { id: spec.id, runId: spec.id, summary: { valMeanAuroc: objective(mask, Number(spec.config.epochs)), testMeanAuroc: null, trainSeconds: 1, flops: 1e9 } };
  });
  const evaluate = executorTrialEvaluator(executor, { base, trainImages: 100, checkpointSha256: 'a'.repeat(64), dataFingerprint: 'b'.repeat(64) });
  const viaExecutor = await runSearch(syntheticSettings({ evaluate, concurrency: 2 }));
  const direct = await runSearch(syntheticSettings());

  t.deepEqual(
    viaExecutor.trials.map((r) => [r.id, r.valMeanAuroc]),
    direct.trials.map((r) => [r.id, r.valMeanAuroc]),
  );
  t.is(seen.length, direct.trials.length);
  t.true(seen.every((s) => s.kind === 'train' && s.checkpointSha256 === 'a'.repeat(64)));
  t.is(new Set(seen.map((s) => s.id)).size, seen.length, 'distinct trials get distinct job ids');
});

test('trial config turns test evaluation off', (t) => {
  const config = trialTrainConfig(trial({}), { base: { ...base, evaluateTest: true }, trainImages: 100 });
  t.is(config.evaluateTest, false);
});

test('executor evaluator reports images seen', async (t) => {
  const executor = new LocalExecutor('unused', async (spec) => ({
    id: spec.id,
    runId: spec.id,
    summary: { valMeanAuroc: 0.5, testMeanAuroc: null, trainSeconds: 1, flops: 1e9, imagesSeen: 48 },
  }));
  const evaluate = executorTrialEvaluator(executor, { base, trainImages: 100, checkpointSha256: 'a'.repeat(64), dataFingerprint: 'b'.repeat(64) });
  const result = await evaluate(trial({}));
  t.is(result.cost.imagesSeen, 48);
});

test('executor evaluator reads older summaries', async (t) => {
  // A worker from before the imagesSeen field returns a summary without it.
  const executor = new LocalExecutor('unused', async (spec) => ({
    id: spec.id,
    runId: spec.id,
    summary: { valMeanAuroc: 0.5, testMeanAuroc: null, trainSeconds: 1, flops: 1e9 },
  }));
  const evaluate = executorTrialEvaluator(executor, { base, trainImages: 100, checkpointSha256: 'a'.repeat(64), dataFingerprint: 'b'.repeat(64) });
  const result = await evaluate(trial({}));
  t.is(result.cost.imagesSeen, 0);
});
