// Study configs for the volume datasets, and a tiny study on the BraTS sample whose dataset
// options reach every run it records.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { loadStudyConfig, parseStudyConfig } from '../../lib/study/config.ts';
import { runStudy } from '../../lib/study/study.ts';
import { initBackend } from '../../lib/util/backend.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

const sharedTest = hasShared('fixtures', 'clip-mini') && hasShared('data', 'brats-sample') ? test.serial : test.serial.skip;

const minimal = { name: 'volumes', checkpoint: '/models/clip', data: '/data/volumes', seeds: [0], methods: [{ name: 'zero-shot', kind: 'zero-shot' }] };

test('study config accepts brats options', (t) => {
  const config = parseStudyConfig({ ...minimal, dataset: 'brats', datasetOptions: { positiveMinAreaMm2: 400, findings: 'subregions' } });
  t.is(config.dataset, 'brats');
  t.deepEqual(config.datasetOptions, { positiveMinAreaMm2: 400, findings: 'subregions' });
});

test('study config accepts luna16 options', (t) => {
  const config = parseStudyConfig({ ...minimal, dataset: 'luna16', datasetOptions: { mode: 'slice' } });
  t.is(config.dataset, 'luna16');
  t.deepEqual(config.datasetOptions, { mode: 'slice' });
});

test('study config defaults dataset options', (t) => {
  t.deepEqual(parseStudyConfig({ ...minimal, dataset: 'brats' }).datasetOptions, {});
});

test('study config rejects options array', (t) => {
  const error = t.throws(() => parseStudyConfig({ ...minimal, dataset: 'brats', datasetOptions: ['slice'] }));
  t.regex(error!.message, /datasetOptions: must be object/);
});

test('study config rejects limit option', (t) => {
  const error = t.throws(() => parseStudyConfig({ ...minimal, dataset: 'brats', datasetOptions: { limit: 8 } }));
  t.regex(error!.message, /datasetOptions: 'limit' is not allowed/);
});

test('study config file resolves option paths', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-study-config-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'study.json');
  fs.writeFileSync(file, JSON.stringify({ ...minimal, dataset: 'brats', datasetOptions: { splitFile: 'splits.csv' } }));
  t.deepEqual(loadStudyConfig(file).datasetOptions, { splitFile: path.join(dir, 'splits.csv') });
});

sharedTest('brats study records options', async (t) => {
  await initBackend();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-brats-study-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const datasetOptions = { positiveMinAreaMm2: 400 };
  const config = parseStudyConfig({
    name: 'brats-tiny',
    checkpoint: sharedPath('fixtures', 'clip-mini', 'hf-format'),
    dataset: 'brats',
    data: sharedPath('data', 'brats-sample'),
    datasetOptions,
    seeds: [0],
    limit: { train: 8, val: 6, test: 6 },
    train: { epochs: 1, batchSize: 4, microBatchSize: 4, lr: 1e-3, warmupSteps: 1, patience: 0 },
    methods: [
      { name: 'zero-shot', kind: 'zero-shot' },
      { name: 'head-only', kind: 'train', plan: 'vision.head,head' },
    ],
    bootstrap: 0,
    runs: path.join(dir, 'runs'),
    report: path.join(dir, 'report.html'),
    pretrained: false,
  });

  const result = await runStudy(config);

  t.deepEqual(result.runs.map((r) => r.method), ['zero-shot', 'head-only']);
  for (const entry of result.runs) {
    const runDir = path.join(dir, 'runs', entry.runId);
    t.true(fs.existsSync(path.join(runDir, 'complete.json')), `${entry.method} run is complete`);
    const recorded = JSON.parse(fs.readFileSync(path.join(runDir, 'config.json'), 'utf8'));
    t.deepEqual(recorded.datasetOptions, datasetOptions, `${entry.method} run records the options`);
    t.is(recorded.dataset, 'brats');
  }
  const html = fs.readFileSync(result.report, 'utf8');
  t.true(html.includes('zero-shot'));
  t.true(html.includes('head-only'));
});
