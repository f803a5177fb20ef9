// A search trial run has no test evaluation (no metrics.json). Trials run through an executor
// land beside the study's runs, so the report must build with them and leave them out of the
// method summary.
import fs from 'node:fs';
import test from 'ava';
import { buildReportModel } from '../../lib/report/render.ts';
import { RunRecord } from '../../lib/runs/record.ts';
import { writeSyntheticRuns } from './synthetic.ts';

test('report skips trial without metrics', (t) => {
  const dir = writeSyntheticRuns({ methods: ['zero-shot', 'full'], seeds: [0] });
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

  const trial = new RunRecord(dir, 'train-search-trial-0');
  trial.writeJson('config.json', { kind: 'train', method: 'search-trial', seed: 0, dataset: 'chestxray14', evaluateTest: false });
  trial.writeJson('cost.json', { trainSeconds: 1, evalSeconds: 0.5, imagesPerSecond: 8, flops: 1e9, trainableParams: 10, totalParams: 100, peakTensorBytes: 1e6, peakRssBytes: 1e7, backend: 'wasm', imagesSeen: 8 });
  trial.writeJson('history.json', { epochs: [{ epoch: 1, trainLoss: 0.6, valMeanAuroc: 0.6, lr: 1e-4, seconds: 1 }], bestEpoch: 1, bestValMeanAuroc: 0.6 });
  trial.markComplete('train', ['config.json', 'cost.json', 'history.json']);

  const model = buildReportModel(dir);
  t.deepEqual(model.summary.map((row) => row.method), ['zero-shot', 'full']);
  t.true(model.runs.some((run) => run.method === 'search-trial'), 'the trial is listed among the runs');
});
