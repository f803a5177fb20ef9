import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RESUME_SETTINGS } from '../../lib/cli/train.ts';
import { identityOf, parseTrainConfig } from '../../lib/train/config.ts';
import { chooseTrainThreads, MIN_PARALLEL_RUN_FLOPS } from '../../lib/train/gradientWorkers.ts';
import { clipfreeze, interruptAfterFirstEpoch } from '../helpers/cli.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

const sharedTest = hasShared('fixtures', 'clip-mini') && hasShared('data', 'chestxray14-sample') ? test : test.skip;

test('resume settings leave run id', (t) => {
  const base = parseTrainConfig({ checkpoint: '/x', data: '/y' });
  const changed = parseTrainConfig({ checkpoint: '/x', data: '/y', trainThreads: 3, activationCache: false, cacheDir: '/tmp/other-cache' });
  for (const key of RESUME_SETTINGS) t.false(key in identityOf(changed), `${key} is part of the run identity`);
  t.deepEqual(identityOf(changed), identityOf(base));
});

test('resume rejects result flags', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'resume-settings-'));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ kind: 'train', checkpoint: '/x', data: '/y' }));
  const { code, stderr } = clipfreeze(['train', '--resume', dir, '--lr', '0.1']);
  t.not(code, 0);
  t.regex(stderr, /--lr cannot be combined with --resume/);
  t.regex(stderr, /Only --train-threads, --activation-cache, --cache-dir may change on resume/);
  fs.rmSync(dir, { recursive: true });
});

test('threads above cores say so', (t) => {
  const choice = chooseTrainThreads(8, { backend: 'wasm', cores: 2, microBatchesPerStep: 16, runFlops: MIN_PARALLEL_RUN_FLOPS });
  t.is(choice.threads, 8);
  t.regex(choice.reason, /more than the 2 cores/);
});

test('threads within cores stay quiet', (t) => {
  const choice = chooseTrainThreads(2, { backend: 'wasm', cores: 2, microBatchesPerStep: 16, runFlops: MIN_PARALLEL_RUN_FLOPS });
  t.is(choice.reason, 'trainThreads 2');
});

// A two-thread run killed after its first epoch resumes on one thread through --resume, as the
// error of a crashed gradient worker advises.
sharedTest('resume changes train threads', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'resume-settings-'));
  const runs = path.join(dir, 'runs');
  const args = [
    '--checkpoint', sharedPath('fixtures', 'clip-mini', 'hf-format'),
    '--data', sharedPath('data', 'chestxray14-sample'),
    '--train-units', 'vision.block.2,head', '--epochs', '3', '--patience', '0',
    '--batch-size', '8', '--micro-batch-size', '2', '--bootstrap', '0', '--train-threads', '2',
    '--limit', 'train=16,val=8,test=8',
  ];

  // Kill the process with SIGKILL as soon as epoch 1 is saved, two epochs before the end.
  const { runDir } = await interruptAfterFirstEpoch(args, runs, 'SIGKILL');
  t.truthy(runDir, 'the run saved no epoch before it exited');
  t.false(fs.existsSync(path.join(runDir!, 'complete.json')));

  const { code, stdout, stderr } = clipfreeze(['train', '--resume', runDir!, '--train-threads', '1']);
  t.is(code, 0, stderr);
  t.is(JSON.parse(stdout.trim().split('\n').at(-1)!).runDir, runDir);
  const history = JSON.parse(fs.readFileSync(path.join(runDir!, 'history.json'), 'utf8')) as { epochs: Array<{ epoch: number }> };
  t.deepEqual(history.epochs.map((e) => e.epoch), [1, 2, 3]);
  const log = fs.readFileSync(path.join(runDir!, 'run.log'), 'utf8');
  t.regex(log, /resume after epoch 1, step 2/);
  const cost = JSON.parse(fs.readFileSync(path.join(runDir!, 'cost.json'), 'utf8')) as { trainThreads: number };
  t.is(cost.trainThreads, 1);
  fs.rmSync(dir, { recursive: true });
});
