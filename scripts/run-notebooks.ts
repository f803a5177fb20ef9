// Executes the tslab notebooks headless into reports/notebooks/ (`npm run notebooks`).
//
//   npm run notebooks                        every notebooks/*.ipynb
//   npm run notebooks -- 01-zero-shot        only the notebooks whose names start so
//   npm run notebooks -- --install-kernel    register the kernel for JupyterLab, then exit
//
// Each notebook runs with Jupyter's nbconvert on the "clipfreeze-ts" kernel: tslab with
// notebooks/kernel-preload.mjs, which makes `import ... from 'clipfreeze'` load this package.
// The executed notebook (.ipynb) and an HTML copy go to reports/notebooks/. A notebook fails
// when a cell raises or when tslab prints a TypeScript diagnostic (which does not stop nbconvert).
// Inputs come from the environment as in the notebooks: CLIPFREEZE_CHECKPOINT, CLIPFREEZE_DATA,
// CLIPFREEZE_SOURCE_DATA and CLIPFREEZE_RUNS.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { log } from '../lib/util/log.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const NOTEBOOKS_DIR = path.join(ROOT, 'notebooks');
const OUT_DIR = path.join(ROOT, 'reports', 'notebooks');
const KERNEL_NAME = 'clipfreeze-ts';
const JUPYTER = process.env.CLIPFREEZE_JUPYTER ?? '/usr/bin/jupyter';
// Seconds one cell may run before nbconvert stops the notebook.
const CELL_TIMEOUT_S = Number(process.env.CLIPFREEZE_NOTEBOOK_CELL_TIMEOUT ?? 1800);

interface NotebookOutput {
  output_type: string;
  name?: string;
  text?: string | string[];
  ename?: string;
  evalue?: string;
}

interface Notebook {
  cells: Array<{ cell_type: string; source: string | string[]; outputs?: NotebookOutput[] }>;
}

/**
 * Makes `clipfreeze` resolvable for tslab's TypeScript compiler, which resolves modules the
 * Node 10 way (node_modules folders, not package.json "exports"). npm removes the link on its
 * next install, so every run checks it.
 */
function linkPackage(): void {
  const link = path.join(ROOT, 'node_modules', 'clipfreeze');
  const stat = fs.lstatSync(link, { throwIfNoEntry: false });
  if (stat?.isSymbolicLink() && fs.realpathSync(link) === fs.realpathSync(ROOT)) return;
  if (stat) throw new Error(`${link} exists and is not a link to ${ROOT}; remove it so the notebooks can import 'clipfreeze'.`);
  fs.symlinkSync('..', link);
}

/** Writes the kernel spec into `dir`/kernels/clipfreeze-ts and returns the spec folder. */
function writeKernelSpec(dir: string): string {
  const tslab = path.join(ROOT, 'node_modules', '.bin', 'tslab');
  if (!fs.existsSync(tslab)) throw new Error(`tslab not found at ${tslab}; run npm install (tslab is a dev dependency).`);
  const specDir = path.join(dir, 'kernels', KERNEL_NAME);
  fs.mkdirSync(specDir, { recursive: true });
  const spec = {
    argv: [tslab, 'kernel', '--config-path', '{connection_file}'],
    display_name: 'TypeScript (clipfreeze)',
    language: 'typescript',
    env: { NODE_OPTIONS: `--import ${path.join(NOTEBOOKS_DIR, 'kernel-preload.mjs')}` },
  };
  fs.writeFileSync(path.join(specDir, 'kernel.json'), `${JSON.stringify(spec, null, 2)}\n`);
  return specDir;
}

function checkJupyter(): void {
  const probe = spawnSync(JUPYTER, ['nbconvert', '--version'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    throw new Error(
      `Jupyter nbconvert is not available at ${JUPYTER} (${probe.error?.message ?? probe.stderr.trim()}). ` +
        'Install the Debian packages jupyter-nbconvert, python3-nbclient and python3-ipykernel, or set CLIPFREEZE_JUPYTER.',
    );
  }
}

function textOf(value: string | string[] | undefined): string {
  return Array.isArray(value) ? value.join('') : (value ?? '');
}

/** Lists the problems in an executed notebook: raised errors and TypeScript diagnostics. */
export function notebookProblems(notebook: Notebook): string[] {
  const problems: string[] = [];
  notebook.cells.forEach((cell, index) => {
    for (const output of cell.outputs ?? []) {
      if (output.output_type === 'error') problems.push(`cell ${index + 1}: ${output.ename}: ${output.evalue}`);
      if (output.output_type !== 'stream' || output.name !== 'stderr') continue;

      // tslab prints compile errors as "line:column - message" and runtime errors as the error
      // with its stack, both on stderr, and nbconvert carries on.
      const text = textOf(output.text);
      if (/^\d+:\d+ - /m.test(text)) problems.push(`cell ${index + 1}: TypeScript: ${text.trim().split('\n')[0]}`);
      else if (/^\w*Error\b.*\n\s+at /m.test(text)) problems.push(`cell ${index + 1}: ${text.trim().split('\n')[0]}`);
    }
  });
  return problems;
}

function runNotebook(file: string, jupyterPath: string): string[] {
  const name = path.basename(file, '.ipynb');
  const started = Date.now();
  log.info(`Executing ${name}`);

  const env = { ...process.env, JUPYTER_PATH: [jupyterPath, process.env.JUPYTER_PATH].filter(Boolean).join(path.delimiter) };
  const executed = spawnSync(
    JUPYTER,
    [
      'nbconvert',
      '--to',
      'notebook',
      '--execute',
      '--allow-errors',
      `--ExecutePreprocessor.kernel_name=${KERNEL_NAME}`,
      `--ExecutePreprocessor.timeout=${CELL_TIMEOUT_S}`,
      '--output-dir',
      OUT_DIR,
      file,
    ],
    { env, encoding: 'utf8', cwd: NOTEBOOKS_DIR },
  );
  const outFile = path.join(OUT_DIR, `${name}.ipynb`);
  if (executed.status !== 0 || !fs.existsSync(outFile)) {
    return [`nbconvert failed (exit ${executed.status}): ${executed.stderr.trim().split('\n').slice(-5).join(' | ')}`];
  }

  const problems = notebookProblems(JSON.parse(fs.readFileSync(outFile, 'utf8')) as Notebook);
  spawnSync(JUPYTER, ['nbconvert', '--to', 'html', '--output-dir', OUT_DIR, outFile], { env, encoding: 'utf8' });
  log.info(`${name}: ${problems.length ? `${problems.length} problem(s)` : 'ok'} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return problems;
}

function main(argv: string[]): number {
  linkPackage();

  if (argv.includes('--install-kernel')) {
    const staging = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-kernel-'));
    try {
      const specDir = writeKernelSpec(staging);
      const install = spawnSync(JUPYTER, ['kernelspec', 'install', '--user', '--replace', '--name', KERNEL_NAME, specDir], { stdio: 'inherit' });
      return install.status ?? 1;
    } finally {
      fs.rmSync(staging, { recursive: true, force: true });
    }
  }

  checkJupyter();
  const jupyterPath = path.join(ROOT, '.cache', 'jupyter');
  writeKernelSpec(jupyterPath);
  fs.mkdirSync(OUT_DIR, { recursive: true });

  const prefixes = argv.filter((a) => !a.startsWith('--'));
  const notebooks = fs
    .readdirSync(NOTEBOOKS_DIR)
    .filter((f) => f.endsWith('.ipynb'))
    .filter((f) => prefixes.length === 0 || prefixes.some((p) => f.startsWith(p)))
    .sort();
  if (notebooks.length === 0) throw new Error(`No notebooks in ${NOTEBOOKS_DIR} match ${prefixes.join(', ') || '*.ipynb'}.`);

  const failures: string[] = [];
  for (const notebook of notebooks) {
    for (const problem of runNotebook(path.join(NOTEBOOKS_DIR, notebook), jupyterPath)) failures.push(`${notebook}: ${problem}`);
  }

  if (failures.length) {
    log.error(`Notebooks with errors:\n  ${failures.join('\n  ')}`);
    return 1;
  }
  log.info(`${notebooks.length} notebook(s) executed into ${OUT_DIR}`);
  return 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (err) {
    log.error((err as Error).message);
    process.exitCode = 1;
  }
}
