import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { acquireRunLock, LOCK_FILE, RunLockedError } from '../../lib/runs/lock.ts';
import { runZeroShot } from '../../lib/eval/zeroShotRun.ts';
import { trainRun } from '../../lib/train/trainer.ts';
import { initBackend } from '../../lib/util/backend.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'run-lock-'));
}

function writeLock(dir: string, host: string, pid: number): void {
  fs.writeFileSync(path.join(dir, LOCK_FILE), JSON.stringify({ host, pid, started: '2026-01-01T00:00:00.000Z' }));
}

test('lock release removes file', (t) => {
  const dir = tempDir();
  const release = acquireRunLock(dir, 'run-a');
  t.true(fs.existsSync(path.join(dir, LOCK_FILE)));
  release();
  t.false(fs.existsSync(path.join(dir, LOCK_FILE)));
});

test('lock held by live process', async (t) => {
  const dir = tempDir();
  const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
  try {
    writeLock(dir, os.hostname(), holder.pid!);
    const error = t.throws(() => acquireRunLock(dir, 'run-b'), { instanceOf: RunLockedError });
    t.regex(error!.message, new RegExp(`Run run-b is in progress in process ${holder.pid}`));
    t.regex(error!.message, /delete .*\.lock/);
  } finally {
    holder.kill();
  }
});

test('lock of exited process taken over', (t) => {
  const dir = tempDir();
  const exited = spawnSync(process.execPath, ['-e', '0']);
  writeLock(dir, os.hostname(), exited.pid!);
  const release = acquireRunLock(dir, 'run-c');
  const owner = JSON.parse(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8')) as { pid: number };
  t.is(owner.pid, process.pid);
  release();
});

test('lock from other host held', (t) => {
  const dir = tempDir();
  writeLock(dir, `${os.hostname()}-elsewhere`, 12345);
  const error = t.throws(() => acquireRunLock(dir, 'run-d'), { instanceOf: RunLockedError });
  t.regex(error!.message, /on host .*-elsewhere/);
});

test('unreadable lock taken over', (t) => {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, LOCK_FILE), 'not json');
  const release = acquireRunLock(dir, 'run-e');
  t.true(fs.existsSync(path.join(dir, LOCK_FILE)));
  release();
});

const sharedTest = hasShared('fixtures', 'clip-mini') && hasShared('data', 'chestxray14-sample') ? test.serial : test.serial.skip;

sharedTest('trainer holds lock while running', async (t) => {
  await initBackend();
  const runs = tempDir();
  let lockedDuringRun = false;
  const result = await trainRun(
    {
      checkpoint: sharedPath('fixtures', 'clip-mini', 'hf-format'),
      data: sharedPath('data', 'chestxray14-sample'),
      runs,
      trainUnits: 'head',
      epochs: 1,
      batchSize: 8,
      microBatchSize: 8,
      bootstrap: 0,
      limit: { train: 8, val: 8, test: 8 },
    },
    {
      hooks: {
        afterStep: () => {
          lockedDuringRun = fs.readdirSync(runs).some((d) => fs.existsSync(path.join(runs, d, LOCK_FILE)));
        },
      },
    },
  );
  t.true(lockedDuringRun, 'no lock file during the run');
  t.false(fs.existsSync(path.join(result.runDir, LOCK_FILE)), 'lock file left after the run');
  fs.rmSync(runs, { recursive: true });
});

sharedTest('zero-shot run respects lock', async (t) => {
  await initBackend();
  const runsDir = tempDir();
  const options = { checkpoint: sharedPath('fixtures', 'clip-mini', 'hf-format'), data: sharedPath('data', 'chestxray14-sample'), split: 'test' as const, limit: 4, bootstrap: 0, runsDir };
  const first = await runZeroShot(options);
  t.false(fs.existsSync(path.join(first.runDir, LOCK_FILE)), 'lock file left after the run');

  const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
  try {
    writeLock(first.runDir, os.hostname(), holder.pid!);
    await t.throwsAsync(() => runZeroShot({ ...options, force: true }), { instanceOf: RunLockedError });
  } finally {
    holder.kill();
  }
  fs.rmSync(runsDir, { recursive: true });
});
