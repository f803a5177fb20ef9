// Run records: one folder per run under the runs directory.
//
//   runs/<run-id>/config.json       everything needed to repeat the run
//   runs/<run-id>/environment.json  backend, package versions, git commit, checkpoint hash
//   runs/<run-id>/predictions.csv   image, patient, split, label:<Finding>..., score:<Finding>...
//   runs/<run-id>/metrics.json      per-finding and mean AUROC with CIs, AP, counts
//   runs/<run-id>/run.log           the run's log lines
//   runs/<run-id>/complete.json     written last; a record without it is unfinished
//
// Other files (history.json, cost.json, forgetting.json, selection.json, checkpoints)
// are added by the kind of run that produces them. Every file is written atomically, and
// complete.json is written only after all others, so a crash never leaves a record that
// looks complete.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { readJson, writeFileAtomic, writeJsonAtomic } from '../util/atomic.ts';
import { currentBackend } from '../util/backend.ts';
import { sha256Json } from '../util/hash.ts';

export type RunKind = 'zero-shot' | 'train' | 'select' | 'study';

export interface CompleteMarker {
  kind: RunKind;
  runId: string;
  finishedAt: string;
  files: string[];
}

export class RunRecord {
  readonly dir: string;
  readonly runId: string;

  constructor(runsDir: string, runId: string) {
    this.runId = runId;
    this.dir = path.resolve(runsDir, runId);
    try {
      fs.mkdirSync(this.dir, { recursive: true });
    } catch (err) {
      // Node's recursive mkdir reports a read-only file system as ENOENT, so name the usual causes.
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new Error(
        `Cannot create the run folder ${this.dir} (${code}). Check that the runs folder ${path.resolve(runsDir)} ` +
          `is a writable folder (not a file), or choose another with --runs.`,
      );
    }
  }

  path(file: string): string {
    return path.join(this.dir, file);
  }

  writeJson(file: string, value: unknown): void {
    writeJsonAtomic(this.path(file), value);
  }

  writeText(file: string, text: string): void {
    writeFileAtomic(this.path(file), text);
  }

  readJson<T>(file: string): T {
    return readJson<T>(this.path(file));
  }

  has(file: string): boolean {
    return fs.existsSync(this.path(file));
  }

  /** Appends one line to run.log (not atomic by design: a log may end mid-run). */
  appendLog(line: string): void {
    try {
      fs.appendFileSync(this.path('run.log'), `${new Date().toISOString()} ${line}\n`);
    } catch (err) {
      throw new Error(`Cannot write ${this.path('run.log')}: ${(err as Error).message}. Was the run folder deleted or made read-only while the run was going on?`);
    }
  }

  isComplete(): boolean {
    return this.has('complete.json');
  }

  /** Marks the record complete after checking that every file in `files` exists. */
  markComplete(kind: RunKind, files: string[]): void {
    const missing = files.filter((f) => !this.has(f));
    if (missing.length) {
      throw new Error(`Run ${this.runId} cannot be marked complete: missing ${missing.join(', ')} in ${this.dir}`);
    }
    const marker: CompleteMarker = { kind, runId: this.runId, finishedAt: new Date().toISOString(), files };
    this.writeJson('complete.json', marker);
  }
}

/** Returns a run id that names its kind and a short hash of its config, so one config maps to one folder. */
export function runIdFor(kind: string, config: unknown, label?: string): string {
  const hash = sha256Json(config).slice(0, 10);
  return label ? `${kind}-${label}-${hash}` : `${kind}-${hash}`;
}

/** Lists the run folders under `runsDir` that have a complete.json, with their markers. */
export function listCompleteRuns(runsDir: string): Array<{ dir: string; marker: CompleteMarker }> {
  if (!fs.existsSync(runsDir)) return [];
  const out: Array<{ dir: string; marker: CompleteMarker }> = [];
  for (const name of fs.readdirSync(runsDir).sort()) {
    const dir = path.join(runsDir, name);
    const markerFile = path.join(dir, 'complete.json');
    if (fs.existsSync(markerFile)) out.push({ dir, marker: readJson<CompleteMarker>(markerFile) });
  }
  return out;
}

const require = createRequire(import.meta.url);
const PACKAGE_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Describes where a run ran: backend, Node and package versions, git commit, checkpoint hash. */
export function describeEnvironment(extra: Record<string, unknown> = {}): Record<string, unknown> {
  const versions: Record<string, string> = {};
  for (const pkg of ['@tensorflow/tfjs', '@tensorflow/tfjs-backend-wasm', '@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu', 'sharp']) {
    try {
      versions[pkg] = (require(`${pkg}/package.json`) as { version: string }).version;
    } catch {
      // Optional packages that are not installed are simply not listed.
    }
  }
  let gitCommit: string | null = null;
  try {
    // The commit of clipfreeze itself, wherever the command runs from.
    gitCommit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: PACKAGE_ROOT, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    gitCommit = null;
  }
  return {
    backend: currentBackend(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    packages: versions,
    gitCommit,
    ...extra,
  };
}
