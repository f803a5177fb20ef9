// TF.js backend selection. The fastest backend present wins, in this order:
// tensorflow (from @tensorflow/tfjs-node-gpu, CUDA), tensorflow (from @tensorflow/tfjs-node, CPU),
// wasm (always installed), cpu (pure JavaScript, slowest). A backend forced with --backend or
// CLIPFREEZE_BACKEND must load, or the command fails instead of silently falling back.
import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { log } from './log.ts';

export const BACKEND_NAMES = ['node-gpu', 'node', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

export interface BackendInfo {
  name: BackendName;
  /** The name TF.js reports (`tensorflow`, `wasm`, `cpu`). */
  tfBackend: string;
  reason: string;
}

const require = createRequire(import.meta.url);
let selected: BackendInfo | null = null;
let pending: Promise<BackendInfo> | null = null;

/**
 * Selects and initialises a backend once per process. `requested` (or CLIPFREEZE_BACKEND)
 * forces one; otherwise the fastest present is used. Later calls return the first choice, and
 * calls made while the first is still initialising wait for it.
 */
export async function initBackend(requested?: string): Promise<BackendInfo> {
  const forced = requested ?? process.env.CLIPFREEZE_BACKEND;
  if (!selected && pending) await pending.catch(() => undefined);
  if (selected) {
    if (forced && forced !== selected.name) {
      throw new Error(`Backend '${selected.name}' is already initialised in this process; cannot switch to '${forced}'.`);
    }
    return selected;
  }
  pending = selectBackend(forced);
  try {
    return await pending;
  } finally {
    pending = null;
  }
}

async function selectBackend(forced: string | undefined): Promise<BackendInfo> {
  if (forced !== undefined && forced !== '') {
    if (!(BACKEND_NAMES as readonly string[]).includes(forced)) {
      throw new Error(`Invalid backend '${forced}'. Allowed values: ${BACKEND_NAMES.join(', ')}.`);
    }
    const error = await tryBackend(forced as BackendName);
    if (error) {
      throw new Error(
        `Backend '${forced}' was requested but failed to load: ${error}. ` +
          `Install its package (${packageHint(forced as BackendName)}) or choose another with --backend or CLIPFREEZE_BACKEND.`,
      );
    }
    selected = { name: forced as BackendName, tfBackend: tf.getBackend(), reason: 'forced by --backend or CLIPFREEZE_BACKEND' };
  } else {
    const skipped: string[] = [];
    for (const name of BACKEND_NAMES) {
      const error = await tryBackend(name);
      if (!error) {
        const reason = skipped.length ? `fastest present; unavailable: ${skipped.join('; ')}` : 'fastest present';
        selected = { name, tfBackend: tf.getBackend(), reason };
        break;
      }
      skipped.push(`${name} (${error})`);
    }
    if (!selected) throw new Error(`No TF.js backend could be initialised: ${skipped.join('; ')}`);
  }

  log.info(`TF.js backend: ${selected.name} (${selected.reason})`);
  return selected;
}

/** Returns the backend chosen by initBackend, or null before it ran. */
export function currentBackend(): BackendInfo | null {
  return selected;
}

async function tryBackend(name: BackendName): Promise<string | null> {
  try {
    if (name === 'node-gpu' || name === 'node') {
      await import(name === 'node-gpu' ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node');
      if (!(await tf.setBackend('tensorflow'))) return 'tensorflow backend did not initialise';
    } else if (name === 'wasm') {
      const wasm = await import('@tensorflow/tfjs-backend-wasm');
      const dist = path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + path.sep;
      wasm.setWasmPaths(dist);
      if (!(await tf.setBackend('wasm'))) return 'wasm backend did not initialise';
    } else {
      if (!(await tf.setBackend('cpu'))) return 'cpu backend did not initialise';
    }
    await tf.ready();
    return null;
  } catch (err) {
    const message = (err as Error).message ?? String(err);
    if (/Cannot find (package|module)/.test(message)) return 'not installed';
    return message.split('\n')[0];
  }
}

function packageHint(name: BackendName): string {
  switch (name) {
    case 'node-gpu':
      return 'npm install @tensorflow/tfjs-node-gpu, with CUDA and cuDNN';
    case 'node':
      return 'npm install @tensorflow/tfjs-node';
    case 'wasm':
      return 'npm install @tensorflow/tfjs-backend-wasm';
    case 'cpu':
      return '@tensorflow/tfjs';
  }
}
