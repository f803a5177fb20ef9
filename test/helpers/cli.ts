// Runs the clipfreeze command line in a child process, as a user would from a shell.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from './shared.ts';

export const CLI = path.join(PROJECT_ROOT, 'bin', 'clipfreeze.js');

/** Runs `clipfreeze ...args` to the end and returns its exit code and output. */
export function clipfreeze(args: string[], logLevel = 'warn'): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [CLI, ...args], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, CLIPFREEZE_LOG_LEVEL: logLevel },
    encoding: 'utf8',
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/**
 * Starts `clipfreeze train ...args` and sends `signal` as soon as the first epoch's state is saved
 * under `runs`. Returns the run folder (null when the process exited before that), the exit code
 * and stderr.
 */
export async function interruptAfterFirstEpoch(args: string[], runs: string, signal: NodeJS.Signals): Promise<{ runDir: string | null; code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [CLI, 'train', ...args, '--runs', runs], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, CLIPFREEZE_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));

  let runDir: string | null = null;
  while (child.exitCode === null && child.signalCode === null) {
    const name = fs.existsSync(runs) ? fs.readdirSync(runs).find((d) => d.startsWith('train-')) : undefined;
    if (name && fs.existsSync(path.join(runs, name, 'state', 'state.json'))) {
      runDir = path.join(runs, name);
      child.kill(signal);
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return { runDir, code: await exited, stderr };
}
