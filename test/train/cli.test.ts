import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TRAIN_KEYS, flagOf } from '../../lib/train/config.ts';
import { clipfreeze, interruptAfterFirstEpoch } from '../helpers/cli.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

const sharedTest = hasShared('fixtures', 'clip-mini') && hasShared('data', 'chestxray14-sample') ? test : test.skip;

test('train help lists every key', (t) => {
  const { code, stdout } = clipfreeze(['train', '--help']);
  t.is(code, 0);
  for (const key of TRAIN_KEYS) t.true(stdout.includes(`${flagOf(key)} `), `${flagOf(key)} missing from --help`);
});

test('train flag error names key', (t) => {
  const { code, stderr } = clipfreeze(['train', '--checkpoint', '/x', '--data', '/y', '--head-init', 'xavier']);
  t.not(code, 0);
  t.regex(stderr, /invalid value for 'headInit': "xavier"\. Allowed values: zero-shot, random/);
});

test('train config file error names key', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'train-cli-'));
  const file = path.join(dir, 'train.json');
  fs.writeFileSync(file, JSON.stringify({ checkpoint: '/x', data: '/y', batchsize: 4 }));
  const { code, stderr } = clipfreeze(['train', '--config', file]);
  t.not(code, 0);
  t.regex(stderr, /unknown key 'batchsize'/);
  fs.rmSync(dir, { recursive: true });
});

test('train rejects invalid dataset options', (t) => {
  const { code, stderr } = clipfreeze(['train', '--checkpoint', '/x', '--data', '/y', '--dataset-options', '{positiveMinAreaMm2: 200}']);
  t.not(code, 0);
  t.regex(stderr, /--dataset-options must be a JSON object, but '\{positiveMinAreaMm2: 200\}' is invalid JSON/);
});

test('train rejects dataset options array', (t) => {
  const { code, stderr } = clipfreeze(['train', '--checkpoint', '/x', '--data', '/y', '--dataset-options', '[1]']);
  t.not(code, 0);
  t.regex(stderr, /--dataset-options must be a JSON object such as/);
});

test('train rejects malformed limit', (t) => {
  const { code, stderr } = clipfreeze(['train', '--checkpoint', '/x', '--data', '/y', '--limit', 'train=ten']);
  t.not(code, 0);
  t.regex(stderr, /--limit must be a positive integer or a list like/);
});

test('train rejects missing source', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'train-cli-'));
  const runs = path.join(dir, 'runs');
  const missing = path.join(dir, 'no-such-set');
  // The checkpoint and data folders exist (empty): the source set is checked before either is read.
  fs.mkdirSync(path.join(dir, 'checkpoint'));
  fs.mkdirSync(path.join(dir, 'data'));
  const { code, stderr } = clipfreeze(['train', '--checkpoint', path.join(dir, 'checkpoint'), '--data', path.join(dir, 'data'), '--source', `foo=${missing}`, '--runs', runs]);
  t.not(code, 0);
  t.true(stderr.includes(`Invalid source set 'foo'`), stderr);
  t.true(stderr.includes(`Image folder not found: ${missing}`), stderr);
  t.false(fs.existsSync(runs), 'a run folder was created');
  fs.rmSync(dir, { recursive: true });
});

test('train rejects missing data folder', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'train-cli-'));
  const runs = path.join(dir, 'runs');
  fs.mkdirSync(path.join(dir, 'checkpoint'));
  const { code, stderr } = clipfreeze(['train', '--checkpoint', path.join(dir, 'checkpoint'), '--data', path.join(dir, 'missing'), '--runs', runs]);
  t.not(code, 0);
  t.true(stderr.includes(`Dataset folder not found: ${path.join(dir, 'missing')}`), stderr);
  t.false(fs.existsSync(runs), 'a run folder was created');
  fs.rmSync(dir, { recursive: true });
});

test('train rejects missing checkpoint', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'train-cli-'));
  const runs = path.join(dir, 'runs');
  const { code, stderr } = clipfreeze(['train', '--checkpoint', path.join(dir, 'missing'), '--data', dir, '--runs', runs]);
  t.not(code, 0);
  t.true(stderr.includes(`Checkpoint not found: ${path.join(dir, 'missing')}`), stderr);
  t.false(fs.existsSync(runs), 'a run folder was created');
  fs.rmSync(dir, { recursive: true });
});

test('train resume of missing folder', (t) => {
  const missing = path.join(os.tmpdir(), 'no-such-runs', 'train-head-0123456789');
  const { code, stderr } = clipfreeze(['train', '--resume', missing]);
  t.not(code, 0);
  t.true(stderr.includes(`run folder ${missing} not found`), stderr);
  t.regex(stderr, /List the runs with 'ls runs\/'/);
});

sharedTest('train plan from selection', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'train-cli-'));
  const selectRun = path.join(dir, 'runs', 'select-gradient-abc');
  fs.mkdirSync(selectRun, { recursive: true });
  fs.writeFileSync(path.join(selectRun, 'selection.json'), JSON.stringify({ strategy: 'gradient', plan: { train: ['vision.block.1', 'head'], truncate: 1 }, scores: {}, cost: {}, details: {} }));
  const { code, stdout, stderr } = clipfreeze([
    'train',
    '--checkpoint', sharedPath('fixtures', 'clip-mini', 'hf-format'),
    '--data', sharedPath('data', 'chestxray14-sample'),
    '--plan-from', selectRun,
    '--epochs', '1', '--batch-size', '8', '--micro-batch-size', '4', '--bootstrap', '0',
    '--limit', 'train=8,val=8,test=8', '--runs', path.join(dir, 'runs'),
  ]);
  t.is(code, 0, stderr);
  const result = JSON.parse(stdout.trim().split('\n').at(-1)!);
  const config = JSON.parse(fs.readFileSync(path.join(result.runDir, 'config.json'), 'utf8'));
  t.deepEqual(config.plan, { train: ['vision.block.1', 'head'], truncate: 1 });
  t.is(result.cost.trainableParams, 198_272 + 32 * 14 + 14);
  fs.rmSync(dir, { recursive: true });
});

const sourceTest = hasShared('fixtures', 'clip-mini') && hasShared('data', 'chestxray14-sample') && hasShared('data', 'natural', 'cifar10-test') ? test : test.skip;

sourceTest('train logs configured source name', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'train-cli-'));
  const { code, stderr } = clipfreeze(
    [
      'train',
      '--checkpoint', sharedPath('fixtures', 'clip-mini', 'hf-format'),
      '--data', sharedPath('data', 'chestxray14-sample'),
      '--source', `natural=${sharedPath('data', 'natural', 'cifar10-test')}:1`,
      '--train-units', 'head', '--epochs', '1', '--batch-size', '8', '--micro-batch-size', '8', '--bootstrap', '0',
      '--limit', 'train=8,val=8,test=8', '--runs', path.join(dir, 'runs'),
    ],
    'info',
  );
  t.is(code, 0, stderr);
  // Before and after fine-tuning, each under the name given on the command line.
  t.is(stderr.match(/natural: zero-shot top-1/g)?.length, 2, stderr);
  t.notRegex(stderr, /cifar10-test: zero-shot top-1/);
  fs.rmSync(dir, { recursive: true });
});

sharedTest('train resumes killed process', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'train-cli-'));
  const runs = path.join(dir, 'runs');
  const args = [
    '--checkpoint', sharedPath('fixtures', 'clip-mini', 'hf-format'),
    '--data', sharedPath('data', 'chestxray14-sample'),
    '--train-units', 'vision.block.2,head', '--epochs', '3', '--patience', '0',
    '--batch-size', '8', '--micro-batch-size', '4', '--bootstrap', '0',
    '--limit', 'train=16,val=8,test=8',
  ];

  // Kill the process with SIGKILL as soon as epoch 1 is saved, two epochs before the end.
  const { runDir } = await interruptAfterFirstEpoch(args, runs, 'SIGKILL');
  t.truthy(runDir, 'the run saved no epoch before it exited');
  t.false(fs.existsSync(path.join(runDir!, 'complete.json')));

  const { code, stdout, stderr } = clipfreeze(['train', '--resume', runDir!]);
  t.is(code, 0, stderr);
  t.is(JSON.parse(stdout.trim().split('\n').at(-1)!).runDir, runDir);
  t.true(fs.existsSync(path.join(runDir!, 'complete.json')));
  const history = JSON.parse(fs.readFileSync(path.join(runDir!, 'history.json'), 'utf8')) as { epochs: Array<{ epoch: number }> };
  t.deepEqual(history.epochs.map((e) => e.epoch), [1, 2, 3]);
  const log = fs.readFileSync(path.join(runDir!, 'run.log'), 'utf8');
  t.regex(log, /resume after epoch 1, step 2/);

  // Evaluation cost covers all three validation passes (8 images each) and the test split (8).
  const cost = JSON.parse(fs.readFileSync(path.join(runDir!, 'cost.json'), 'utf8')) as { evalFlops: number; forwardFlopsPerImage: number };
  t.is(cost.evalFlops, cost.forwardFlopsPerImage * (3 * 8 + 8));
  fs.rmSync(dir, { recursive: true });
});
