// Child process that runs one trial for a queue worker. Training blocks the event loop for
// seconds at a time, so the trial runs here while the parent process keeps renewing the BullMQ
// job lock. A crash or out-of-memory error in a trial also leaves the worker running.
//
// Protocol (IPC messages): the parent sends one TrialProcessRequest. The child sends back any
// number of progress messages and then one result or error message, and exits.
import { pathToFileURL } from 'node:url';
import type { TrialProgress, TrialResult, TrialSpec } from './trial.ts';

export interface TrialProcessRequest {
  spec: TrialSpec;
  runsDir: string;
  /** Module that exports `runTrial(spec, {runsDir, onProgress})`, as a file URL or path. */
  runnerModule: string;
}

export type TrialProcessMessage =
  | { type: 'progress'; fraction: number; message: string }
  | { type: 'result'; result: TrialResult }
  | { type: 'error'; name: string; message: string; stack?: string };

type RunTrial = (
  spec: TrialSpec,
  options: { runsDir: string; onProgress?: (p: TrialProgress) => void; signal?: AbortSignal },
) => Promise<TrialResult>;

/** Time a runner gets to stop after SIGTERM (for example to save a resumable state), in milliseconds. */
const STOP_GRACE_MS = 5000;

function send(message: TrialProcessMessage): Promise<void> {
  return new Promise((resolve) => process.send!(message, () => resolve()));
}

// When the parent dies (a worker killed with SIGKILL), its job lock expires and another worker
// takes the trial over, so this process must stop writing into the run folder.
process.on('disconnect', () => process.exit(1));

// SIGTERM (the worker releases the trial) aborts the runner's signal, so a training run can stop
// cleanly. A runner that ignores the signal is ended after STOP_GRACE_MS.
const stop = new AbortController();
process.on('SIGTERM', () => {
  stop.abort('trial released by the worker');
  setTimeout(() => process.exit(143), STOP_GRACE_MS).unref();
});

process.once('message', async (request: TrialProcessRequest) => {
  try {
    const specifier = request.runnerModule.startsWith('file:') ? request.runnerModule : pathToFileURL(request.runnerModule).href;
    const runner = (await import(specifier)) as { runTrial?: RunTrial };
    if (typeof runner.runTrial !== 'function') {
      throw new Error(`Trial runner module ${request.runnerModule} does not export a runTrial function.`);
    }
    const result = await runner.runTrial(request.spec, {
      runsDir: request.runsDir,
      signal: stop.signal,
      onProgress: (p) => {
        void send({ type: 'progress', fraction: p.fraction, message: p.message });
      },
    });
    await send({ type: 'result', result });
    process.exit(0);
  } catch (err) {
    const error = err as Error;
    await send({ type: 'error', name: error.name ?? 'Error', message: error.message ?? String(err), stack: error.stack });
    process.exit(1);
  }
});
