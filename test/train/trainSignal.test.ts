import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { clipfreeze, interruptAfterFirstEpoch } from '../helpers/cli.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

const sharedTest = hasShared('fixtures', 'clip-mini') && hasShared('data', 'chestxray14-sample') ? test : test.skip;

// Ctrl-C during a two-thread run stops it with a message and exit code 130, and the same
// command then resumes it to the end.
sharedTest('train stops on SIGINT', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'train-signal-'));
  const runs = path.join(dir, 'runs');
  const args = [
    '--checkpoint', sharedPath('fixtures', 'clip-mini', 'hf-format'),
    '--data', sharedPath('data', 'chestxray14-sample'),
    '--train-units', 'vision.block.2,head', '--epochs', '10', '--patience', '0',
    '--batch-size', '8', '--micro-batch-size', '2', '--bootstrap', '0', '--train-threads', '2',
    '--limit', 'train=16,val=8,test=8',
  ];

  // Send SIGINT as soon as epoch 1 is saved. Epochs take well under a second here, so the run has
  // 10 of them: a loaded machine must not reach the end before the signal arrives.
  const { runDir, code, stderr } = await interruptAfterFirstEpoch(args, runs, 'SIGINT');
  t.truthy(runDir, 'the run saved no epoch before it exited');
  t.is(code, 130, stderr);
  t.regex(stderr, /SIGINT received/);
  t.regex(stderr, /aborted at step \d+; finished epochs are saved in .*Run it again to resume/);
  t.false(fs.existsSync(path.join(runDir!, 'complete.json')));

  const rerun = clipfreeze(['train', ...args, '--runs', runs]);
  t.is(rerun.code, 0, rerun.stderr);
  const history = JSON.parse(fs.readFileSync(path.join(runDir!, 'history.json'), 'utf8')) as { epochs: Array<{ epoch: number }> };
  t.deepEqual(history.epochs.map((e) => e.epoch), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  t.regex(fs.readFileSync(path.join(runDir!, 'run.log'), 'utf8'), /resume after epoch [1-9], step \d+/);
  fs.rmSync(dir, { recursive: true });
});
