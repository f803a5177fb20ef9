import test from 'ava';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { buildSelectConfig } from '../../lib/cli/select.ts';
import { PROJECT_ROOT, sharedPath } from '../helpers/shared.ts';
import { shared } from './helpers/selectConfig.ts';

const run = promisify(execFile);

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['bin/clipfreeze.js', ...args], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, CLIPFREEZE_BACKEND: 'wasm', CLIPFREEZE_LOG_LEVEL: 'warn' },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

shared('select CLI records gradient plan', async (t) => {
  const runs = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-select-cli-'));
  const { code, stdout, stderr } = await cli([
    'select',
    '--strategy', 'gradient',
    '--checkpoint', sharedPath('fixtures', 'clip-mini', 'hf-format'),
    '--data', sharedPath('data', 'chestxray14-sample'),
    '--units', '1',
    '--batches', '1',
    '--batch-size', '4',
    '--limit', 'train=8,val=8,test=8',
    '--runs', runs,
  ]);
  t.is(code, 0, stderr);
  const output = JSON.parse(stdout) as { runDir: string; plan: { train: string[] } };
  t.is(output.plan.train.length, 2);
  t.true(fs.existsSync(path.join(output.runDir, 'complete.json')));
});

test('select CLI rejects unknown strategy', async (t) => {
  const { code, stderr } = await cli(['select', '--strategy', 'random', '--checkpoint', '.', '--data', '.']);
  t.not(code, 0);
  t.regex(stderr, /Invalid --strategy 'random'. Allowed values: similarity, gradient, search/);
});

test('select CLI rejects bad budget key', async (t) => {
  const { code, stderr } = await cli(['select', '--strategy', 'search', '--budget', 'epochs=3']);
  t.not(code, 0);
  t.regex(stderr, /'epochs=3' is not a budget setting/);
});

test('select config merges file and flags', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-select-config-'));
  const file = path.join(dir, 'select.json');
  fs.writeFileSync(file, JSON.stringify({ strategy: 'search', checkpoint: 'ckpt', data: 'data', seed: 3, budget: { total: 40 } }));
  const config = buildSelectConfig({ config: file, seed: 5, budget: { eta: 3 }, truncations: [0, 1] } as Parameters<typeof buildSelectConfig>[0]);
  t.is(config.seed, 5);
  t.is(config.method, 'any');
  t.is(config.budget?.total, 40);
  t.is(config.budget?.eta, 3);
  t.is(config.budget?.maxBudget, 4);
  t.deepEqual(config.settings.truncations, [0, 1]);
});

test('select config resolves paths against file', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-select-config-'));
  const file = path.join(dir, 'select.json');
  fs.writeFileSync(file, JSON.stringify({ strategy: 'similarity', checkpoint: 'ckpt', data: 'data', source: 'natural', runs: 'runs', datasetOptions: { splitFile: 'splits.csv' } }));
  const config = buildSelectConfig({ config: file } as Parameters<typeof buildSelectConfig>[0]);
  t.is(config.checkpoint, path.join(dir, 'ckpt'));
  t.is(config.data, path.join(dir, 'data'));
  t.is(config.source, path.join(dir, 'natural'));
  t.is(config.runs, path.join(dir, 'runs'));
  t.is(config.datasetOptions?.splitFile, path.join(dir, 'splits.csv'));
  fs.rmSync(dir, { recursive: true });
});

test('select config merges dataset options', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-select-config-'));
  const file = path.join(dir, 'select.json');
  fs.writeFileSync(file, JSON.stringify({ strategy: 'gradient', checkpoint: 'ckpt', data: 'data', dataset: 'brats', datasetOptions: { positiveMinAreaMm2: 200, sliceStride: 2 } }));
  const config = buildSelectConfig({ config: file, datasetOptions: { sliceStride: 4 } } as unknown as Parameters<typeof buildSelectConfig>[0]);
  t.deepEqual(config.datasetOptions, { positiveMinAreaMm2: 200, sliceStride: 4 });
  fs.rmSync(dir, { recursive: true });
});

test('select CLI rejects invalid options JSON', async (t) => {
  const { code, stderr } = await cli(['select', '--strategy', 'gradient', '--checkpoint', 'x', '--data', 'y', '--dataset-options', '{mode: slice}']);
  t.not(code, 0);
  t.regex(stderr, /Invalid JSON '\{mode: slice\}'/);
});
