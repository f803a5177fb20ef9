// Moves a finished run folder from a worker to the coordinator through the job's return value.
// The worker packs the folder's small files (JSON, CSV, logs) gzip-compressed. The coordinator
// checks each file's SHA-256 and writes them atomically with complete.json last, so its runs
// folder looks exactly as a local run would leave it. Weight files stay on the worker and are
// listed in complete.json under `leftOnWorker`.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import zlib from 'node:zlib';
import { writeFileAtomic } from '../util/atomic.ts';
import type { CompleteMarker } from '../runs/record.ts';

/** Weight files (checkpoints, optimizer state) never travel: they are large and a study reads none of them. */
const WEIGHT_FILE = /\.(safetensors|bin|pt|pth|ckpt|npy|npz)$/i;

/** Files above this size stay on the worker. The job's return value lives in Redis memory. */
export const MAX_TRANSFER_FILE_BYTES = 64 << 20;

export interface TransferredFile {
  /** Path relative to the run folder, with '/' separators. */
  path: string;
  bytes: number;
  sha256: string;
  gzipBase64: string;
}

export interface RunFolderPayload {
  runId: string;
  files: TransferredFile[];
  /** Files kept on the worker (weights, or above MAX_TRANSFER_FILE_BYTES). */
  leftOnWorker: Array<{ path: string; bytes: number }>;
  workerHost: string;
  /** The run folder on the worker, where the files left there are. */
  workerRunDir: string;
}

/** complete.json as written on the coordinator when some files stayed on the worker. */
export interface TransferredCompleteMarker extends CompleteMarker {
  leftOnWorker?: { host: string; runDir: string; files: Array<{ path: string; bytes: number }> };
}

/** Packs a complete run folder for the job's return value. Throws when complete.json is missing. */
export function packRunFolder(runDir: string, runId: string): RunFolderPayload {
  if (!fs.existsSync(path.join(runDir, 'complete.json'))) {
    throw new Error(`Run folder ${runDir} has no complete.json: the trial did not finish its run record.`);
  }

  const payload: RunFolderPayload = { runId, files: [], leftOnWorker: [], workerHost: os.hostname(), workerRunDir: runDir };
  for (const relative of listFiles(runDir)) {
    const full = path.join(runDir, ...relative.split('/'));
    const bytes = fs.statSync(full).size;
    if (WEIGHT_FILE.test(relative) || bytes > MAX_TRANSFER_FILE_BYTES) {
      payload.leftOnWorker.push({ path: relative, bytes });
      continue;
    }
    const data = fs.readFileSync(full);
    payload.files.push({
      path: relative,
      bytes,
      sha256: crypto.createHash('sha256').update(data).digest('hex'),
      gzipBase64: zlib.gzipSync(data).toString('base64'),
    });
  }
  return payload;
}

/**
 * Writes a packed run folder under `runsDir/<runId>`: every file atomically after checking its
 * SHA-256, then complete.json last. Returns false without writing when that folder is already
 * complete, so a result collected twice is recorded once.
 */
export function unpackRunFolder(runsDir: string, payload: RunFolderPayload): boolean {
  checkRelativePath(payload.runId, 'run id');
  const runDir = path.join(runsDir, payload.runId);
  if (fs.existsSync(path.join(runDir, 'complete.json'))) return false;

  let marker: TransferredCompleteMarker | null = null;
  for (const file of payload.files) {
    checkRelativePath(file.path, 'file path');
    const data = zlib.gunzipSync(Buffer.from(file.gzipBase64, 'base64'));
    const sha256 = crypto.createHash('sha256').update(data).digest('hex');
    if (sha256 !== file.sha256 || data.length !== file.bytes) {
      throw new Error(
        `Transferred file ${file.path} of run ${payload.runId} is corrupt: SHA-256 ${sha256} (${data.length} bytes), expected ${file.sha256} (${file.bytes} bytes).`,
      );
    }
    if (file.path === 'complete.json') {
      marker = JSON.parse(data.toString('utf8')) as TransferredCompleteMarker;
      continue;
    }
    writeFileAtomic(path.join(runDir, ...file.path.split('/')), data);
  }
  if (!marker) throw new Error(`Transferred run ${payload.runId} has no complete.json; nothing was marked complete.`);

  if (payload.leftOnWorker.length > 0) {
    const left = new Set(payload.leftOnWorker.map((f) => f.path));
    marker = {
      ...marker,
      files: marker.files.filter((f) => !left.has(f)),
      leftOnWorker: { host: payload.workerHost, runDir: payload.workerRunDir, files: payload.leftOnWorker },
    };
  }
  writeFileAtomic(path.join(runDir, 'complete.json'), JSON.stringify(marker, null, 2) + '\n');
  return true;
}

function listFiles(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const dirent of fs.readdirSync(dir, { withFileTypes: true })) {
    const relative = prefix ? `${prefix}/${dirent.name}` : dirent.name;
    if (dirent.isDirectory()) out.push(...listFiles(path.join(dir, dirent.name), relative));
    else if (dirent.isFile() && !/\.tmp-\d+-\d+$/.test(dirent.name)) out.push(relative);
  }
  return out.sort();
}

/** Rejects absolute paths and '..' so a payload cannot write outside the run folder. */
function checkRelativePath(relative: string, what: string): void {
  const parts = relative.split('/');
  if (relative === '' || path.isAbsolute(relative) || parts.some((p) => p === '..' || p === '' || p.includes('\\'))) {
    throw new Error(`Invalid ${what} '${relative}' in a transferred run: it must be a relative path without '..'.`);
  }
}
