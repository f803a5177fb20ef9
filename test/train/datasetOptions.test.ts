// Dataset options and the evaluateTest switch, end to end on the BraTS sample with the mini CLIP
// fixture. Train and select runs record the options, which change their run ids. The openers
// reject unknown keys. A run with evaluateTest false is complete without test files.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openDataset } from '../../lib/data/registry.ts';
import { loadRuns } from '../../lib/report/load.ts';
import { runSelect, type SelectConfig } from '../../lib/strategies/selectRun.ts';
import { trainRun } from '../../lib/train/trainer.ts';
import { initBackend } from '../../lib/util/backend.ts';
import { hasShared, PROJECT_ROOT, sharedPath } from '../helpers/shared.ts';

const sharedTest = hasShared('fixtures', 'clip-mini') && hasShared('data', 'brats-sample') ? test.serial : test.serial.skip;
const checkpoint = sharedPath('fixtures', 'clip-mini', 'hf-format');
const data = sharedPath('data', 'brats-sample');

// A threshold above the default 100 mm^2, so that fewer slices count as tumour slices.
const options = { positiveMinAreaMm2: 400 };

test.before(async () => {
  await initBackend();
});

function tempRuns(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-dataset-options-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function readJson(file: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

function trainConfig(runs: string) {
  return {
    checkpoint,
    data,
    dataset: 'brats',
    runs,
    epochs: 1,
    batchSize: 4,
    microBatchSize: 4,
    lr: 1e-3,
    warmupSteps: 1,
    bootstrap: 0,
    trainUnits: 'vision.head,head',
    limit: { train: 4, val: 4, test: 4 },
  };
}

function selectConfig(runs: string, overrides: Partial<SelectConfig> = {}): SelectConfig {
  return {
    strategy: 'gradient',
    method: 'rgn',
    checkpoint,
    dataset: 'brats',
    data,
    source: null,
    units: 2,
    seed: 0,
    limit: { train: 8, val: 4, test: 4 },
    budget: null,
    settings: { batches: 2, batchSize: 4 },
    runs,
    ...overrides,
  };
}

sharedTest('train run records dataset options', async (t) => {
  const runs = tempRuns(t);
  const plain = await trainRun(trainConfig(runs));
  const withOptions = await trainRun({ ...trainConfig(runs), datasetOptions: options });

  t.not(withOptions.runId, plain.runId);
  t.true(fs.existsSync(path.join(withOptions.runDir, 'complete.json')));
  const config = readJson(path.join(withOptions.runDir, 'config.json'));
  t.deepEqual(config.datasetOptions, options);
});

sharedTest('train run rejects unknown option', async (t) => {
  const runs = tempRuns(t);
  const error = await t.throwsAsync(trainRun({ ...trainConfig(runs), datasetOptions: { tumorArea: 200 } }));
  t.regex(error!.message, /Unknown BraTS option\(s\) tumorArea/);
  t.regex(error!.message, /Accepted options: .*positiveMinAreaMm2/);
});

const chestTest = hasShared('data', 'chestxray14-sample') ? test : test.skip;

chestTest('chestxray14 rejects unknown option', async (t) => {
  const error = await t.throwsAsync(openDataset('chestxray14', sharedPath('data', 'chestxray14-sample'), { valFration: 0.2 }));
  t.regex(error!.message, /Unknown ChestX-ray14 option\(s\) valFration/);
  t.regex(error!.message, /Accepted options: .*valFraction/);
});

sharedTest('select run records dataset options', async (t) => {
  const runs = tempRuns(t);
  const plain = await runSelect(selectConfig(runs));
  const withOptions = await runSelect(selectConfig(runs, { datasetOptions: options }));

  t.not(withOptions.runId, plain.runId);
  t.true(fs.existsSync(path.join(withOptions.runDir, 'complete.json')));
  const config = readJson(path.join(withOptions.runDir, 'config.json'));
  t.deepEqual(config.datasetOptions, options);
});

sharedTest('select run rejects unknown option', async (t) => {
  const runs = tempRuns(t);
  const error = await t.throwsAsync(runSelect(selectConfig(runs, { datasetOptions: { modality: 'flair' } })));
  t.regex(error!.message, /Unknown BraTS option\(s\) modality/);
});

sharedTest('train run without test evaluation', async (t) => {
  const runs = tempRuns(t);
  const result = await trainRun({ ...trainConfig(runs), evaluateTest: false });

  t.is(result.metrics, null);
  t.true(typeof result.valMeanAuroc === 'number');
  t.false(fs.existsSync(path.join(result.runDir, 'metrics.json')));
  t.false(fs.existsSync(path.join(result.runDir, 'predictions.csv')));
  const complete = readJson(path.join(result.runDir, 'complete.json')) as { files: string[] };
  t.deepEqual([...complete.files].sort(), ['config.json', 'cost.json', 'dataset.json', 'environment.json', 'history.json']);

  // A rerun returns the complete record, and the report loader reads it without metrics.
  const again = await trainRun({ ...trainConfig(runs), evaluateTest: false });
  t.is(again.runId, result.runId);
  t.is(again.metrics, null);
  const [loaded] = loadRuns(runs);
  t.is(loaded.metrics, null);
});

sharedTest('zero-shot CLI passes dataset options', (t) => {
  const runs = tempRuns(t);
  const args = ['zero-shot', '--checkpoint', checkpoint, '--data', data, '--dataset', 'brats', '--runs', runs, '--dataset-options', '{"tumourArea": 200}'];
  const result = spawnSync(process.execPath, [path.join(PROJECT_ROOT, 'bin', 'clipfreeze.js'), ...args], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, CLIPFREEZE_LOG_LEVEL: 'warn' },
    encoding: 'utf8',
  });
  t.not(result.status, 0);
  t.regex(result.stderr, /Unknown BraTS option\(s\) tumourArea/);
});
