import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { parse } from 'csv-parse/sync';
import { hasShared, PROJECT_ROOT, sharedPath } from '../helpers/shared.ts';

const run = promisify(execFile);
const sharedTest = hasShared('fixtures', 'clip-mini') && hasShared('data', 'chestxray14-sample') ? test.serial : test.skip;
const checkpoint = sharedPath('fixtures', 'clip-mini', 'hf-format');
const data = sharedPath('data', 'chestxray14-sample');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-zsrun-'));
const env = { ...process.env, CLIPFREEZE_CACHE_DIR: path.join(tmp, 'cache') };

async function cli(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, [path.join(PROJECT_ROOT, 'bin', 'clipfreeze.js'), ...args], { cwd: PROJECT_ROOT, env, maxBuffer: 64 * 1024 * 1024 });
}

interface ZeroShotOutput {
  runId: string;
  runDir: string;
  reused: boolean;
  n: number;
  meanAuroc: number | null;
}

const runArgs = ['zero-shot', '--checkpoint', checkpoint, '--data', data, '--split', 'test', '--runs', path.join(tmp, 'runs'), '--bootstrap', '100', '--seed', '3'];

sharedTest('zero-shot cli writes complete record', async (t) => {
  const out = JSON.parse((await cli(runArgs)).stdout) as ZeroShotOutput;
  t.false(out.reused);
  t.is(out.n, 75);
  t.is(typeof out.meanAuroc, 'number');

  const files = ['config.json', 'predictions.csv', 'metrics.json', 'environment.json', 'dataset.json', 'run.log', 'complete.json'];
  for (const file of files) t.true(fs.existsSync(path.join(out.runDir, file)), `${file} exists`);
  const complete = JSON.parse(fs.readFileSync(path.join(out.runDir, 'complete.json'), 'utf8')) as { kind: string; files: string[] };
  t.is(complete.kind, 'zero-shot');
  t.deepEqual([...complete.files].sort(), files.filter((f) => f !== 'complete.json').sort());
  const completedAt = fs.statSync(path.join(out.runDir, 'complete.json')).mtimeMs;
  for (const file of complete.files) t.true(fs.statSync(path.join(out.runDir, file)).mtimeMs <= completedAt, `${file} written before complete.json`);

  const config = JSON.parse(fs.readFileSync(path.join(out.runDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  t.is(config.kind, 'zero-shot');
  t.is(config.method, 'zero-shot');
  t.is(config.seed, 3);
  t.is(config.dataset, 'chestxray14');
  t.is(config.split, 'test');
  t.regex(String(config.checkpointSha256), /^[0-9a-f]{64}$/);
  const environment = JSON.parse(fs.readFileSync(path.join(out.runDir, 'environment.json'), 'utf8')) as Record<string, unknown>;
  t.is(environment.checkpointSha256, config.checkpointSha256);
  t.truthy(environment.backend, 'environment names the backend');

  const rows = parse(fs.readFileSync(path.join(out.runDir, 'predictions.csv'), 'utf8'), { columns: true }) as Array<Record<string, string>>;
  t.is(rows.length, 75);
  t.true(rows.every((row) => row.split === 'test'));
  const scores = rows.flatMap((row) => Object.entries(row).filter(([k]) => k.startsWith('score:')).map(([, v]) => Number(v)));
  t.is(scores.length, 75 * 14);
  t.true(scores.every((s) => s > 0 && s < 1), 'scores are probabilities');

  const log = fs.readFileSync(path.join(out.runDir, 'run.log'), 'utf8');
  t.regex(log, /mean AUROC \d\.\d{4} over \d+ findings/);
});

sharedTest('metrics cli reproduces metrics.json', async (t) => {
  const { runDir } = JSON.parse((await cli(runArgs)).stdout) as ZeroShotOutput;
  const recorded = JSON.parse(fs.readFileSync(path.join(runDir, 'metrics.json'), 'utf8')) as unknown;
  const { stdout } = await cli(['metrics', '--predictions', path.join(runDir, 'predictions.csv'), '--bootstrap', '100', '--seed', '3']);
  t.deepEqual(JSON.parse(stdout), recorded);
});

sharedTest('zero-shot rerun reuses record', async (t) => {
  const first = JSON.parse((await cli(runArgs)).stdout) as ZeroShotOutput;
  const started = Date.now();
  const second = JSON.parse((await cli(runArgs)).stdout) as ZeroShotOutput;
  t.true(second.reused);
  t.is(second.runId, first.runId);
  t.is(second.meanAuroc, first.meanAuroc);
  t.log(`rerun took ${Date.now() - started} ms`);
});

sharedTest('zero-shot limit and prompts change run', async (t) => {
  const prompts = path.join(tmp, 'prompts.json');
  const shipped = JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'lib', 'eval', 'prompts', 'chestxray14.json'), 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(prompts, JSON.stringify({ ...shipped, positiveTemplates: ['an x-ray with {finding}.'], negativeTemplates: ['an x-ray without {finding}.'] }));
  const out = JSON.parse((await cli([...runArgs, '--limit', '20', '--prompts', prompts, '--bootstrap', '0'])).stdout) as ZeroShotOutput;
  t.is(out.n, 20);
  const config = JSON.parse(fs.readFileSync(path.join(out.runDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  t.is(config.prompts, prompts);
  t.is(config.limit, 20);
});

sharedTest('invalid prompt file fails clearly', async (t) => {
  const prompts = path.join(tmp, 'bad-prompts.json');
  fs.writeFileSync(prompts, JSON.stringify({ positiveTemplates: ['a chest x-ray'], negativeTemplates: ['no {finding}'], findings: {} }));
  const error = await t.throwsAsync(cli([...runArgs, '--prompts', prompts]));
  t.regex(String((error as { stderr?: string }).stderr), /positiveTemplates\[0\] "a chest x-ray" has no \{finding\} placeholder/);
});

sharedTest('invalid split is rejected', async (t) => {
  const error = await t.throwsAsync(cli(['zero-shot', '--checkpoint', checkpoint, '--data', data, '--split', 'dev']));
  t.regex(String((error as { stderr?: string }).stderr), /Invalid --split 'dev'/);
});

test('zero-shot rejects huge bootstrap', async (t) => {
  // Rejected while parsing flags, before the checkpoint or data is read.
  const error = await t.throwsAsync(cli(['zero-shot', '--checkpoint', '/nonexistent', '--data', '/nonexistent', '--bootstrap', '1000000000']));
  t.regex(String((error as { stderr?: string }).stderr), /--bootstrap must be at most 100000, got '1000000000'/);
});

sharedTest('zero-shot strict images rejects missing', async (t) => {
  const error = await t.throwsAsync(cli([...runArgs, '--strict-images']));
  const stderr = String((error as { stderr?: string }).stderr);
  t.regex(stderr, /images listed in the split lists are missing/);
  t.regex(stderr, /--strict-images/);
});

sharedTest('zero-shot records forgetting baseline', async (t) => {
  const { runZeroShot } = await import('../../lib/eval/zeroShotRun.ts');
  process.env.CLIPFREEZE_CACHE_DIR = env.CLIPFREEZE_CACHE_DIR;
  const source = [{ name: 'cifar', path: sharedPath('data', 'natural', 'cifar10-test'), limitPerClass: 2 }];
  const result = await runZeroShot({ checkpoint, data, split: 'test', limit: 8, bootstrap: 0, runsDir: path.join(tmp, 'runs-forgetting'), source });
  const forgetting = JSON.parse(fs.readFileSync(path.join(result.runDir, 'forgetting.json'), 'utf8'));
  const marker = JSON.parse(fs.readFileSync(path.join(result.runDir, 'complete.json'), 'utf8'));
  t.is(forgetting.sets.cifar.n, 20);
  t.is(forgetting.sets.cifar.before, forgetting.sets.cifar.after);
  t.is(forgetting.sets.cifar.drop, 0);
  t.true(marker.files.includes('forgetting.json'));
});
