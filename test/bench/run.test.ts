// Smoke run of `npm run bench` on the tiny shape: every task runs and reports its figures.
// Timings are not asserted; the full-size figures live in BENCHMARKS.md.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

interface BenchReport {
  backend: string;
  onnxRuntime: string | null;
  torch: { python: string | null; unavailableReason: string | null };
  rows: Array<{ name: string; clipfreeze: Record<string, number>; torch: unknown; ratio: number | null }>;
  sweeps: Array<{ prefixImagesWithCache: number; prefixImagesWithoutCache: number; secondsWithCache: number }>;
}

test('bench smoke run reports every task', (t) => {
  const output = execFileSync(process.execPath, ['--import', 'tsx', path.join(root, 'bench', 'run.ts'), '--smoke', '--json', '--no-torch'], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const report = JSON.parse(output) as BenchReport;

  const expectedRows = ['forward, batch 8', 'forward, batch 32', 'train full, batch 32 = 8 x 4', 'train frozen8, batch 32 = 8 x 4', 'train head, batch 32 = 8 x 4'];
  // onnxruntime-node is optional; where it is installed, two forward rows use it.
  if (report.onnxRuntime) expectedRows.push('forward, batch 8, onnxruntime', 'forward, batch 32, onnxruntime', 'train frozen8, batch 32 = 8 x 4, TF.js prefix');
  expectedRows.push('train frozen8, batch 32 = 8 x 4, 1 thread', 'train frozen8, batch 32 = 2 x 16');
  t.deepEqual(
    report.rows.map((row) => row.name),
    expectedRows,
  );
  for (const row of report.rows) {
    t.true(row.clipfreeze.imagesPerSecond > 0, `${row.name}: images per second`);
    t.true(row.clipfreeze.peakTensorBytes > 0, `${row.name}: peak tensor bytes`);
    t.true(row.clipfreeze.peakRssBytes > 0, `${row.name}: peak RSS`);
    t.is(row.ratio, null, `${row.name}: ratio without the peer`);
  }
  const oneThread = report.rows.find((row) => row.name.endsWith(', 1 thread'))!;
  t.is(oneThread.clipfreeze.threads, 1);
  t.true(['node-gpu', 'node', 'wasm', 'cpu'].includes(report.backend), `backend ${report.backend}`);
  t.regex(report.torch.unavailableReason ?? '', /--no-torch/);

  // Trainable parameters of the tiny tower's plans, as torch_peer.py counts them.
  t.is(report.rows[2].clipfreeze.trainableParams, 216_142);
  t.is(report.rows[3].clipfreeze.trainableParams, 52_622);
  t.is(report.rows[4].clipfreeze.trainableParams, 462);

  // 3 plans x 2 epochs x 8 images: the cache runs the prefix once per image.
  t.is(report.sweeps.length, report.onnxRuntime ? 2 : 1);
  for (const sweep of report.sweeps) {
    t.is(sweep.prefixImagesWithCache, 8);
    t.is(sweep.prefixImagesWithoutCache, 48);
  }
});
