// A stand-in for the real trial runner with the same signature: it writes a small run folder
// whose numbers depend only on the trial's config, and sleeps so tests can act mid-trial.
//
// Config keys read: seed (number), steps (progress updates), stepMs (sleep per step),
// failAttempts (the first N starts of this trial throw). Every start, abort (on the runner's
// signal) and finish is appended to the file named by FAKE_TRIAL_LOG, one line
// `start|abort|finish <trial id> <pid>`, so tests can count executions across processes.
import fs from 'node:fs';
import path from 'node:path';
import { RunRecord } from '../../lib/runs/record.ts';
import { createRng } from '../../lib/util/rng.ts';
import type { TrialProgress, TrialResult, TrialSpec } from '../../lib/study/trial.ts';

export interface FakeTrialConfig {
  seed: number;
  steps?: number;
  stepMs?: number;
  failAttempts?: number;
  checkpoint?: string;
  data?: string;
  planFrom?: string;
  /** Throws an error named ConfigError, as the trainer does for an invalid config. */
  invalidConfig?: boolean;
}

function record(event: 'start' | 'finish' | 'abort', id: string): void {
  const file = process.env.FAKE_TRIAL_LOG;
  if (file) fs.appendFileSync(file, `${event} ${id} ${process.pid}\n`);
}

function startsOf(id: string): number {
  const file = process.env.FAKE_TRIAL_LOG;
  if (!file || !fs.existsSync(file)) return 0;
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith(`start ${id} `)).length;
}

export async function runTrial(
  spec: TrialSpec,
  options: { runsDir: string; onProgress?: (p: TrialProgress) => void; signal?: AbortSignal },
): Promise<TrialResult> {
  const config = spec.config as unknown as FakeTrialConfig;
  record('start', spec.id);
  if ((config.failAttempts ?? 0) > 0 && startsOf(spec.id) <= config.failAttempts!) {
    throw new Error(`planned failure of ${spec.id}`);
  }

  if (config.invalidConfig) {
    throw Object.assign(new Error(`invalid config of ${spec.id}`), { name: 'ConfigError' });
  }

  const steps = config.steps ?? 3;
  for (let step = 1; step <= steps; step++) {
    await new Promise((resolve) => setTimeout(resolve, config.stepMs ?? 100));
    if (options.signal?.aborted) {
      record('abort', spec.id);
      throw new Error(`fake trial ${spec.id} aborted`);
    }
    options.onProgress?.({ id: spec.id, fraction: step / steps, message: `step ${step}/${steps}` });
  }

  // Numbers from the seed alone, as a seeded training run would give.
  const rng = createRng(config.seed);
  const findings = ['Atelectasis', 'Effusion'];
  const rows = Array.from({ length: 5 }, (_, i) => `img${i}.png,p${i},test,${i % 2},${(i + 1) % 2},${rng().toFixed(6)},${rng().toFixed(6)}`);
  const meanAuroc = 0.5 + rng() / 2;
  const valMeanAuroc = 0.5 + rng() / 2;

  const run = new RunRecord(options.runsDir, spec.id);
  run.writeJson('config.json', { kind: spec.kind, ...spec.config });
  run.writeText('predictions.csv', ['image,patient,split,label:Atelectasis,label:Effusion,score:Atelectasis,score:Effusion', ...rows].join('\n') + '\n');
  run.writeJson('metrics.json', { split: 'test', n: rows.length, findings, meanAuroc });
  run.writeJson('history.json', { epochs: [{ epoch: 1, trainLoss: 0.7, valMeanAuroc, lr: 1e-4, seconds: 1 }] });
  run.writeJson('cost.json', { trainSeconds: 1.5, flops: 1e9 * config.seed });
  fs.mkdirSync(path.join(run.dir, 'checkpoint'), { recursive: true });
  fs.writeFileSync(path.join(run.dir, 'checkpoint', 'model.safetensors'), Buffer.alloc(4096, 7));
  run.appendLog(`fake trial ${spec.id} on pid ${process.pid}`);
  run.markComplete(spec.kind === 'zero-shot' ? 'zero-shot' : 'train', [
    'config.json',
    'predictions.csv',
    'metrics.json',
    'history.json',
    'cost.json',
    'checkpoint/model.safetensors',
    'run.log',
  ]);

  record('finish', spec.id);
  return { id: spec.id, runId: spec.id, summary: { valMeanAuroc, testMeanAuroc: meanAuroc, trainSeconds: 1.5, flops: 1e9 * config.seed } };
}
