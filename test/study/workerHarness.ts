// Test helpers for queue workers: fake checkpoint and data folders, trial specs for the fake
// runner, and `clipfreeze worker` processes whose output the tests can wait on.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { PROJECT_ROOT } from '../helpers/shared.ts';
import { startRedis, type RedisServer } from './redisServer.ts';
import { checkpointSha256, dataFingerprint } from '../../lib/study/fingerprint.ts';
import { trialId, type TrialSpec } from '../../lib/study/trial.ts';
import type { FakeTrialConfig } from './workerFakeRunner.ts';

export const FAKE_RUNNER = path.join(PROJECT_ROOT, 'test', 'study', 'workerFakeRunner.ts');

export interface TrialInputs {
  root: string;
  checkpoint: string;
  data: string;
  checkpointSha256: string;
  dataFingerprint: string;
  /** File the fake runner appends `start|finish <id> <pid>` lines to. */
  trialLog: string;
}

/** Creates a temporary folder with a fake checkpoint, a fake data folder and an empty trial log. */
export function makeInputs(): TrialInputs {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-dist-'));
  const checkpoint = path.join(root, 'checkpoint');
  const data = path.join(root, 'data');
  fs.mkdirSync(checkpoint);
  fs.mkdirSync(path.join(data, 'images'), { recursive: true });
  fs.writeFileSync(path.join(checkpoint, 'model.safetensors'), Buffer.from('fake weights'));
  fs.writeFileSync(path.join(data, 'labels.csv'), 'image,finding\na.png,Effusion\n');
  fs.writeFileSync(path.join(data, 'images', 'a.png'), Buffer.alloc(100, 1));
  const trialLog = path.join(root, 'trials.log');
  fs.writeFileSync(trialLog, '');
  return { root, checkpoint, data, checkpointSha256: checkpointSha256(checkpoint), dataFingerprint: dataFingerprint(data), trialLog };
}

export function makeSpec(inputs: TrialInputs, config: FakeTrialConfig): TrialSpec {
  const full = { checkpoint: inputs.checkpoint, data: inputs.data, ...config };
  return {
    id: trialId('train', full as unknown as Record<string, unknown>),
    kind: 'train',
    config: full as unknown as Record<string, unknown>,
    checkpointSha256: inputs.checkpointSha256,
    dataFingerprint: inputs.dataFingerprint,
  };
}

/** Counts `start`, `abort` or `finish` lines per trial id in the fake runner's log. */
export function countEvents(inputs: TrialInputs, event: 'start' | 'abort' | 'finish'): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of fs.readFileSync(inputs.trialLog, 'utf8').split('\n')) {
    const [kind, id] = line.split(' ');
    if (kind === event) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

export interface WorkerProcess {
  child: ChildProcess;
  runsDir: string;
  output(): string;
  /** Resolves when the output matches `pattern`; rejects after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
}

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/** Starts `clipfreeze worker` with the fake runner. `extraArgs` override or add options, `extraEnv` variables. */
export function spawnWorker(redisUrl: string, inputs: TrialInputs, name: string, extraArgs: string[] = [], extraEnv: NodeJS.ProcessEnv = {}): WorkerProcess {
  const runsDir = path.join(inputs.root, `runs-${name}`);
  const args = [
    path.join(PROJECT_ROOT, 'bin', 'clipfreeze.js'),
    'worker',
    '--redis', redisUrl,
    '--checkpoint', inputs.checkpoint,
    '--data', inputs.data,
    '--runs', runsDir,
    '--runner', FAKE_RUNNER,
    // Short locks, so a killed worker's trial moves on within seconds; long enough that a
    // busy test machine still renews them in time.
    '--lock-duration', '4',
    '--stalled-interval', '2',
    ...extraArgs,
  ];
  const child = spawn(process.execPath, args, {
    cwd: inputs.root,
    env: { ...process.env, FAKE_TRIAL_LOG: inputs.trialLog, CLIPFREEZE_LOG_LEVEL: 'info', ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let text = '';
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => {
    text += d.toString();
    for (const listener of listeners) listener();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      children.delete(child);
      for (const listener of listeners) listener();
      resolve(code);
    }),
  );

  return {
    child,
    runsDir,
    output: () => text,
    exited,
    waitFor(pattern, timeoutMs = 20_000) {
      return new Promise<void>((resolve, reject) => {
        const check = () => {
          if (pattern.test(text)) {
            cleanup();
            resolve();
          } else if (child.exitCode !== null || child.signalCode !== null) {
            cleanup();
            reject(new Error(`worker ${name} exited before printing ${pattern}:\n${text}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`worker ${name} did not print ${pattern} within ${timeoutMs} ms:\n${text}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
  };
}

/** Stops a worker process with `signal` and waits for it to exit, killing it after `timeoutMs`. */
export async function stopWorker(worker: WorkerProcess, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000): Promise<number | null> {
  if (worker.child.exitCode !== null || worker.child.signalCode !== null) return worker.child.exitCode;
  worker.child.kill(signal);
  const timer = setTimeout(() => worker.child.kill('SIGKILL'), timeoutMs);
  const code = await worker.exited;
  clearTimeout(timer);
  return code;
}

/** Waits until `predicate` holds, checking every 50 ms; throws after `timeoutMs`. */
export async function waitUntil(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A private Redis, fake inputs and the workers started on them, all removed at the end of the test. */
export interface Setup {
  redis: RedisServer;
  inputs: TrialInputs;
  workers: WorkerProcess[];
}

export async function setUp(t: { teardown(fn: () => Promise<void>): void }): Promise<Setup> {
  const setup: Setup = { redis: await startRedis(), inputs: makeInputs(), workers: [] };
  t.teardown(async () => {
    await Promise.all(setup.workers.map((w) => stopWorker(w, 'SIGKILL')));
    await setup.redis.stop();
    fs.rmSync(setup.inputs.root, { recursive: true, force: true });
  });
  return setup;
}

export function startWorker(setup: Setup, name: string, extraArgs: string[] = []): WorkerProcess {
  const worker = spawnWorker(setup.redis.url, setup.inputs, name, extraArgs);
  setup.workers.push(worker);
  return worker;
}

/** Asserts that every trial has one complete run folder, finished once, with one run.log line. */
export function assertRecordedOnce(t: ExecutionContext, setup: Setup, runsDir: string, ids: string[]): void {
  const finishes = countEvents(setup.inputs, 'finish');
  for (const id of ids) {
    t.true(fs.existsSync(path.join(runsDir, id, 'complete.json')), `${id} has no complete.json`);
    t.is(finishes.get(id), 1, `${id} finished ${finishes.get(id) ?? 0} times`);
    const logLines = fs.readFileSync(path.join(runsDir, id, 'run.log'), 'utf8').trim().split('\n');
    t.is(logLines.length, 1, `${id}/run.log has ${logLines.length} lines`);
  }
}

