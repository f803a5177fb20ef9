// clipfreeze against PyTorch on the ViT-B/32 image tower with random weights (`npm run bench`).
//
//   npm run bench [-- --json] [-- --smoke] [-- --no-torch] [-- --python /usr/bin/python3]
//
// Figures: forward throughput at batch 8 and 32, and training-step throughput at an effective
// batch of 32 (gradient accumulation over micro-batches, clipping, AdamW). Training runs for
// full fine-tuning, the bottom 8 of 12 blocks frozen, and the task head only. Each figure comes
// with its peak memory. A last figure is the activation cache's effect on a sweep of plans that
// share a frozen prefix. Every figure runs in its own
// process (bench/task.ts, bench/torch_peer.py), clipfreeze and PyTorch alternating, and is
// printed with the ratio clipfreeze/PyTorch of milliseconds per image (lower is better for
// clipfreeze). Without a Python that imports torch, clipfreeze's figures are printed alone
// with the reason. --smoke runs every task on a tiny shape in seconds (no timing value).
import { execFileSync, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { log } from '../lib/util/log.ts';
import { BENCH_PLANS, type BenchModel } from './shapes.ts';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const flag = (name: string): boolean => args.includes(`--${name}`);
const value = (name: string): string | undefined => {
  const index = args.indexOf(`--${name}`);
  return index >= 0 ? args[index + 1] : undefined;
};

const smoke = flag('smoke');
const model: BenchModel = smoke ? 'tiny' : 'ViT-B/32';
const batchSize = 32;
const microBatchSize = Number(value('micro-batch-size') ?? 4);
const forwardRepeats = smoke ? 1 : Number(value('repeats') ?? 3);
const sweepImages = smoke ? 8 : Number(value('sweep-images') ?? 32);
const sweepEpochs = 2;

type Figures = Record<string, number | string | null>;

interface Row {
  name: string;
  clipfreeze: Figures;
  torch: Figures | null;
  /** clipfreeze ms per image / PyTorch ms per image; null without the peer. */
  ratio: number | null;
}

/** Finds a Python that imports torch: --python, CLIPFREEZE_TORCH_PYTHON, python3, /usr/bin/python3. */
function findTorchPython(): { python: string | null; version: string | null; reason: string | null } {
  if (flag('no-torch')) return { python: null, version: null, reason: 'the PyTorch peer was disabled with --no-torch' };
  const requested = value('python') ?? process.env.CLIPFREEZE_TORCH_PYTHON;
  const candidates = requested ? [requested] : ['python3', '/usr/bin/python3'];
  const failures: string[] = [];
  for (const python of candidates) {
    const probe = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
    if (probe.status === 0) return { python, version: probe.stdout.trim(), reason: null };
    const failure = probe.error ? probe.error.message : (probe.stderr.trim().split('\n').pop() ?? `exit code ${probe.status}`);
    failures.push(`${python}: ${failure}`);
  }
  return {
    python: null,
    version: null,
    reason: `no Python here imports torch (${failures.join('; ')}). Install it (Debian: apt-get install python3-torch) or pass --python PATH.`,
  };
}

function runClipfreeze(taskArgs: string[], env: Record<string, string> = {}): Figures {
  const output = execFileSync(process.execPath, ['--import', 'tsx', path.join(benchDir, 'task.ts'), '--model', model, ...taskArgs], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 20,
  });
  return JSON.parse(output.trim().split('\n').pop()!) as Figures;
}

function runTorch(python: string, taskArgs: string[]): Figures {
  const output = execFileSync(python, [path.join(benchDir, 'torch_peer.py'), '--model', model, '--threads', '2', ...taskArgs], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    // Without PASSIVE, torch's OpenMP threads busy-wait and slow the peer 2-3x on 2 cores.
    env: { ...process.env, OMP_WAIT_POLICY: 'PASSIVE', OPENBLAS_NUM_THREADS: '2' },
  });
  return JSON.parse(output.trim().split('\n').pop()!) as Figures;
}

const torch = findTorchPython();
if (torch.reason) log.warn(`PyTorch peer unavailable: ${torch.reason}`);
const started = new Date();
const loadBefore = os.loadavg();

const tasks: Array<{ name: string; args: string[]; env?: Record<string, string> }> = [
  { name: 'forward, batch 8', args: ['--task', 'forward', '--batch', '8', '--repeats', String(forwardRepeats)] },
  { name: 'forward, batch 32', args: ['--task', 'forward', '--batch', '32', '--repeats', String(Math.max(1, forwardRepeats - 1))] },
  ...BENCH_PLANS.map((plan) => ({
    name: `train ${plan}, batch ${batchSize} = ${batchSize / microBatchSize} x ${microBatchSize}`,
    args: ['--task', 'train', '--plan', plan, '--batch-size', String(batchSize), '--micro-batch-size', String(microBatchSize)],
  })),
];

// onnxruntime-node is an optional dependency; its rows run the same forward pass (and are
// compared with the same PyTorch figure) through lib/clip/onnxImageEncoder.ts.
let onnxRuntime: string | null = null;
try {
  onnxRuntime = createRequire(import.meta.url)('onnxruntime-node/package.json').version as string;
} catch {
  log.warn('onnxruntime-node is not installed: skipping the ONNX forward rows.');
}
if (onnxRuntime) {
  for (const batch of ['8', '32']) {
    const forwardTask = tasks.find((task) => task.name === `forward, batch ${batch}`)!;
    tasks.push({ name: `forward, batch ${batch}, onnxruntime`, args: [...forwardTask.args, '--runtime', 'onnx'] });
  }
  // The trainer runs frozen prefixes on onnxruntime when it is installed; this row shows the
  // same step with the prefix on TF.js.
  const frozen8 = tasks.find((task) => task.name.startsWith('train frozen8'))!;
  tasks.push({ name: `${frozen8.name}, TF.js prefix`, args: frozen8.args, env: { CLIPFREEZE_PREFIX_RUNTIME: 'tfjs' } });
}
// Training computes gradients on every core by default (lib/train/gradientWorkers.ts); this
// row shows the same step on the main thread alone.
const frozen8 = tasks.find((task) => task.name.startsWith('train frozen8'))!;
tasks.push({ name: `${frozen8.name}, 1 thread`, args: [...frozen8.args, '--threads', '1'] });
// Larger micro-batches give the matrix products more rows; both implementations use them here.
const largeMicroBatch = 16;
tasks.push({
  name: `train frozen8, batch ${batchSize} = ${batchSize / largeMicroBatch} x ${largeMicroBatch}`,
  args: ['--task', 'train', '--plan', 'frozen8', '--batch-size', String(batchSize), '--micro-batch-size', String(largeMicroBatch)],
});

/** Drops the options that only clipfreeze takes (--runtime, --threads) from a task's arguments. */
function peerArgs(args: string[]): string[] {
  const own = new Set(['--runtime', '--threads']);
  return args.filter((arg, i, all) => !own.has(arg) && !own.has(all[i - 1]));
}

const rows: Row[] = [];
for (const task of tasks) {
  log.info(`bench: ${task.name} (clipfreeze)`);
  const ours = runClipfreeze(task.args, task.env);
  let peer: Figures | null = null;
  if (torch.python) {
    log.info(`bench: ${task.name} (PyTorch)`);
    peer = runTorch(torch.python, peerArgs(task.args));
  }
  const ratio = peer ? (ours.msPerImage as number) / (peer.msPerImage as number) : null;
  rows.push({ name: task.name, clipfreeze: ours, torch: peer, ratio });
}

log.info('bench: activation cache sweep');
const sweepArgs = ['--task', 'sweep', '--images', String(sweepImages), '--epochs', String(sweepEpochs), '--micro-batch-size', String(microBatchSize)];
/** Times the sweep with and without the activation cache. */
function runSweep(env: Record<string, string> = {}) {
  const withCache = runClipfreeze([...sweepArgs, '--cache', 'on'], env);
  const withoutCache = runClipfreeze([...sweepArgs, '--cache', 'off'], env);
  return {
    plans: withCache.plans as number,
    images: sweepImages,
    epochs: sweepEpochs,
    prefixRuntime: withCache.prefixRuntime as string,
    secondsWithCache: withCache.seconds as number,
    secondsWithoutCache: withoutCache.seconds as number,
    speedup: (withoutCache.seconds as number) / (withCache.seconds as number),
    prefixImagesWithCache: withCache.prefixImages as number,
    prefixImagesWithoutCache: withoutCache.prefixImages as number,
  };
}
const sweeps = [runSweep()];
// With onnxruntime the prefix is cheap, so the cache's effect is also shown with it on TF.js.
if (onnxRuntime) sweeps.push(runSweep({ CLIPFREEZE_PREFIX_RUNTIME: 'tfjs' }));

const report = {
  model: `${model} image tower, random weights`,
  smoke,
  started: started.toISOString(),
  seconds: (Date.now() - started.getTime()) / 1000,
  machine: {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    loadBefore: loadBefore.map((l) => Number(l.toFixed(2))),
    loadAfter: os.loadavg().map((l) => Number(l.toFixed(2))),
    node: process.version,
  },
  backend: rows[0]?.clipfreeze.backend ?? null,
  torch: {
    python: torch.python,
    version: torch.version,
    threads: 2,
    ompWaitPolicy: 'PASSIVE',
    blas: rows.find((row) => row.torch)?.torch?.blas ?? null,
    unavailableReason: torch.reason,
  },
  onnxRuntime,
  rows,
  sweeps,
};

if (flag('json')) {
  console.log(JSON.stringify(report, null, 2));
} else {
  console.log(formatReport(report));
}

function formatReport(r: typeof report): string {
  const mib = (bytes: unknown) => (typeof bytes === 'number' ? `${(bytes / 2 ** 20).toFixed(0)}` : '-');
  const ms = (figures: Figures | null) => (figures ? (figures.msPerImage as number).toFixed(1) : '-');
  const lines = [
    `${r.model}; backend ${r.backend}; ${r.machine.cores} x ${r.machine.cpu}; load ${r.machine.loadBefore.join(' ')} before, ${r.machine.loadAfter.join(' ')} after`,
    r.torch.python ? `PyTorch ${r.torch.version} (${r.torch.python}), 2 threads, OMP_WAIT_POLICY=PASSIVE, BLAS ${r.torch.blas}` : `PyTorch peer not run: ${r.torch.unavailableReason}`,
    r.onnxRuntime ? `onnxruntime-node ${r.onnxRuntime} for the onnxruntime rows (2 threads)` : 'onnxruntime-node not installed: no onnxruntime rows',
    '',
    `${'task'.padEnd(48)} ${'threads'.padStart(7)} ${'clipfreeze ms/img'.padStart(17)} ${'PyTorch ms/img'.padStart(14)} ${'ratio'.padStart(6)}  ${'peak tensors MiB'.padStart(16)} ${'peak RSS MiB (cf / pt)'.padStart(22)}`,
  ];
  for (const row of r.rows) {
    lines.push(
      `${row.name.padEnd(48)} ${String(row.clipfreeze.threads ?? '-').padStart(7)} ${ms(row.clipfreeze).padStart(17)} ${ms(row.torch).padStart(14)} ${(row.ratio === null ? '-' : row.ratio.toFixed(2)).padStart(6)}  ` +
        `${mib(row.clipfreeze.peakTensorBytes).padStart(16)} ${`${mib(row.clipfreeze.peakRssBytes)} / ${mib(row.torch?.peakRssBytes)}`.padStart(22)}`,
    );
  }
  lines.push('');
  for (const s of r.sweeps) {
    lines.push(
      `activation cache, prefix on ${s.prefixRuntime}: ${s.plans} plans sharing a frozen prefix, ${s.images} images x ${s.epochs} epochs each: ` +
        `${s.secondsWithoutCache.toFixed(1)} s without the cache (prefix run on ${s.prefixImagesWithoutCache} images), ` +
        `${s.secondsWithCache.toFixed(1)} s with it (${s.prefixImagesWithCache} images): ${s.speedup.toFixed(2)}x`,
    );
  }
  lines.push(`total ${r.seconds.toFixed(0)} s`);
  return lines.join('\n');
}
