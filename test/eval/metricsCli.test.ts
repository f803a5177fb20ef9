import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ChestXray14Dataset } from '../../lib/data/chestxray14.ts';
import { formatMetricsTable } from '../../lib/cli/metrics.ts';
import { evaluatePredictions } from '../../lib/eval/metrics.ts';
import { readPredictions, writePredictions, type Predictions } from '../../lib/eval/predictions.ts';
import { createRng } from '../../lib/util/rng.ts';
import { hasShared, PROJECT_ROOT, sharedPath } from '../helpers/shared.ts';

const sharedTest = hasShared('data', 'chestxray14-sample') ? test : test.skip;

function runCli(args: string[]) {
  const result = spawnSync(process.execPath, [path.join(PROJECT_ROOT, 'bin', 'clipfreeze.js'), ...args], {
    cwd: PROJECT_ROOT,
    encoding: 'utf8',
    env: { ...process.env, CLIPFREEZE_LOG_LEVEL: 'warn' },
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Writes predictions for the sample's test split: real labels and patients, seeded random scores that lean towards the label. */
function writeSamplePredictions(dir: string): string {
  const dataset = ChestXray14Dataset.open(sharedPath('data', 'chestxray14-sample'), { cache: false });
  const rng = createRng(11);
  const predictions: Predictions = {
    findings: dataset.findings,
    rows: dataset.samples('test').map((s) => ({
      image: s.id,
      patient: s.patient,
      split: s.split,
      labels: s.labels,
      scores: s.labels.map((y) => Math.round((0.3 * y + 0.7 * rng()) * 1e4) / 1e4),
    })),
  };
  const file = path.join(dir, 'predictions.csv');
  writePredictions(file, predictions);
  return file;
}

sharedTest('metrics cli equals evaluatePredictions', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-metrics-'));
  const file = writeSamplePredictions(dir);
  const out = path.join(dir, 'metrics.json');

  const { code, stdout, stderr } = runCli(['metrics', '--predictions', file, '--bootstrap', '200', '--seed', '7', '--out', out]);
  t.is(code, 0, stderr);
  const expected = evaluatePredictions(readPredictions(file), { bootstrap: 200, seed: 7 });
  t.deepEqual(JSON.parse(stdout), JSON.parse(JSON.stringify(expected)));
  t.deepEqual(JSON.parse(fs.readFileSync(out, 'utf8')), JSON.parse(stdout));
  t.true(stderr.includes(formatMetricsTable(expected)), stderr);
  t.is(expected.n, 75);
  t.is(expected.bootstrap.unit, 'patient');
  fs.rmSync(dir, { recursive: true });
});

test('metrics cli rejects bad bootstrap', (t) => {
  const { code, stderr } = runCli(['metrics', '--predictions', 'x.csv', '--bootstrap', '-3']);
  t.not(code, 0);
  t.regex(stderr, /--bootstrap.*non-negative integer, got '-3'/);
});

test('metrics cli rejects huge bootstrap', (t) => {
  const { code, stderr } = runCli(['metrics', '--predictions', 'x.csv', '--bootstrap', '1e9']);
  t.not(code, 0);
  t.regex(stderr, /--bootstrap.*'1e9'.*1e9 exceeds the maximum of 100000 replicates/);
});

test('metrics cli names bad file', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-metrics-'));
  const file = path.join(dir, 'p.csv');
  fs.writeFileSync(file, 'image,patient,split,label:A,score:A\na.png,1,test,1,0.9\nb.png,2,test,0,oops\n');
  const { code, stderr } = runCli(['metrics', '--predictions', file, '--bootstrap', '0']);
  t.is(code, 1);
  t.regex(stderr, /Invalid score 'oops' at .*p\.csv line 3, column 'score:A'/);
  fs.rmSync(dir, { recursive: true });
});

test('metrics cli names empty file', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-metrics-'));
  const file = path.join(dir, 'empty.csv');
  fs.writeFileSync(file, 'image,patient,split,label:A,score:A\n');
  const { code, stderr } = runCli(['metrics', '--predictions', file, '--bootstrap', '0']);
  t.is(code, 1);
  t.regex(stderr, /empty\.csv has a header but no prediction rows/);
  fs.rmSync(dir, { recursive: true });
});
