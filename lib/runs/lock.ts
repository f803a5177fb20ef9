// A lock file in a run folder, so that two processes do not train the same run at once.
//
// The file `.lock` contains the host name and process id of its owner. A lock whose owner runs on
// this host but no longer exists (a killed process) is stale and taken over. A lock from another
// host cannot be checked from here, so it counts as held until someone deletes the file.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { moduleLog } from '../util/log.ts';

const logger = moduleLog('runs');

export const LOCK_FILE = '.lock';

interface LockOwner {
  host: string;
  pid: number;
  started: string;
}

export class RunLockedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunLockedError';
  }
}

/**
 * Claims the run folder `dir` for this process and returns the function that releases it.
 * Throws RunLockedError when a live process (or a process on another host) owns the folder.
 */
export function acquireRunLock(dir: string, runId: string): () => void {
  const file = path.join(dir, LOCK_FILE);
  const owner: LockOwner = { host: os.hostname(), pid: process.pid, started: new Date().toISOString() };

  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, JSON.stringify(owner), { flag: 'wx' });
      return () => fs.rmSync(file, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }

    const holder = readOwner(file);
    if (holder && isAlive(holder)) {
      const where = holder.host === owner.host ? `process ${holder.pid}` : `process ${holder.pid} on host ${holder.host}`;
      throw new RunLockedError(
        `Run ${runId} is in progress in ${where} (since ${holder.started}). Wait for it to finish or stop it; a stopped run ` +
          `resumes from its last finished epoch. If that process no longer runs, delete ${file}.`,
      );
    }
    logger.info(`Taking over the lock of run ${runId}: ${holder ? `process ${holder.pid} has exited` : 'the lock file is unreadable'}`);
    fs.rmSync(file, { force: true });
  }
  throw new RunLockedError(`Cannot lock run ${runId}: another process claimed ${file} at the same moment. Run the command again.`);
}

function readOwner(file: string): LockOwner | null {
  try {
    const owner = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<LockOwner>;
    if (typeof owner.host !== 'string' || typeof owner.pid !== 'number') return null;
    return { host: owner.host, pid: owner.pid, started: String(owner.started ?? 'an unknown time') };
  } catch {
    return null;
  }
}

/** Returns false only when the owner ran on this host and its process is gone. */
function isAlive(owner: LockOwner): boolean {
  if (owner.host !== os.hostname()) return true;
  try {
    process.kill(owner.pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
