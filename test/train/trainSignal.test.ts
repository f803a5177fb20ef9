import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hasShared, PROJECT_ROOT, sharedPath } from '../helpers/shared.ts';

const sharedTest = hasShared('fixtures', 'clip-mini') && hasShared('data', 'chestxray14-sample') ? test : test.skip;

// Ctrl-C during a two-thread run stops it with a message and exit code 130, and the same
// command then resumes it to the end.
sharedTest('train stops on SIGINT', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'train-signal-'));
  const runs = path.join(dir, 'runs');
  const args = [
    path.join(PROJECT_ROOT, 'bin', 'clipfreeze.js'), 'train',
    '--checkpoint', sharedPath('fixtures', 'clip-mini', 'hf-format'),
    '--data', sharedPath('data', 'chestxray14-sample'),
    '--train-units', 'vision.block.2,head', '--epochs', '10', '--patience', '0',
    '--batch-size', '8', '--micro-batch-size', '2', '--bootstrap', '0', '--train-threads', '2',
    '--limit', 'train=16,val=8,test=8', '--runs', runs,
  ];
  const env = { ...process.env, CLIPFREEZE_LOG_LEVEL: 'warn' };

  // Send SIGINT as soon as epoch 1 is saved. Epochs take well under a second here, so the run has
  // 10 of them: a loaded machine must not reach the end before the signal arrives.
  const child = spawn(process.execPath, args, { cwd: PROJECT_ROOT, env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let runDir: string | null = null;
  while (child.exitCode === null && child.signalCode === null) {
    const name = fs.existsSync(runs) ? fs.readdirSync(runs).find((d) => d.startsWith('train-')) : undefined;
    if (name && fs.existsSync(path.join(runs, name, 'state', 'state.json'))) {
      runDir = path.join(runs, name);
      child.kill('SIGINT');
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const code = await exited;
  t.truthy(runDir, 'the run saved no epoch before it exited');
  t.is(code, 130, stderr);
  t.regex(stderr, /SIGINT received/);
  t.regex(stderr, /aborted at step \d+; finished epochs are saved in .*Run it again to resume/);
  t.false(fs.existsSync(path.join(runDir!, 'complete.json')));

  const rerun = spawnSync(process.execPath, args, { cwd: PROJECT_ROOT, env, encoding: 'utf8' });
  t.is(rerun.status, 0, rerun.stderr);
  const history = JSON.parse(fs.readFileSync(path.join(runDir!, 'history.json'), 'utf8')) as { epochs: Array<{ epoch: number }> };
  t.deepEqual(history.epochs.map((e) => e.epoch), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  t.regex(fs.readFileSync(path.join(runDir!, 'run.log'), 'utf8'), /resume after epoch [1-9], step \d+/);
  fs.rmSync(dir, { recursive: true });
});
