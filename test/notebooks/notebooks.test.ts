// Executes every notebook with `npm run notebooks` on the clip-mini fixture and the ChestX-ray14
// sample, and checks that no cell printed an error. Also checks that committed notebooks have
// their outputs cleared and use the clipfreeze kernel.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import test from 'ava';
import { chromium } from 'playwright-core';
import { PROJECT_ROOT, hasShared, sharedPath } from '../helpers/shared.ts';
import { notebookProblems } from '../../scripts/run-notebooks.ts';

const NOTEBOOKS_DIR = path.join(PROJECT_ROOT, 'notebooks');
const OUT_DIR = path.join(PROJECT_ROOT, 'reports', 'notebooks');
const CHROMIUM = process.env.CLIPFREEZE_CHROMIUM ?? '/usr/bin/chromium';
const notebooks = fs.readdirSync(NOTEBOOKS_DIR).filter((f) => f.endsWith('.ipynb')).sort();

interface Cell {
  cell_type: string;
  source: string | string[];
  outputs?: Array<{ output_type: string; name?: string; text?: string | string[] }>;
  execution_count?: number | null;
}

function readNotebook(file: string): { cells: Cell[]; metadata: { kernelspec?: { name: string } } } {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

// Jupyter and tslab come from .ci/run (Debian packages, npm dev dependency); elsewhere the run skips.
const hasJupyter = fs.existsSync('/usr/bin/jupyter-nbconvert');
if (!hasJupyter && process.env.CI) throw new Error('jupyter-nbconvert not found; install the Debian packages jupyter-nbconvert, python3-nbclient and python3-ipykernel.');
const runTest = hasJupyter && hasShared('fixtures', 'clip-mini') && hasShared('data', 'chestxray14-sample') ? test : test.skip;

test('notebooks cover every experiment', (t) => {
  for (const prefix of ['01-zero-shot', '02-full-fine-tuning', '03-truncation', '04-similarity', '05-gradient', '06-search', '07-comparison']) {
    t.true(notebooks.some((n) => n.startsWith(prefix)), `notebook ${prefix}`);
  }
});

test('committed notebooks have no outputs', (t) => {
  for (const name of notebooks) {
    const notebook = readNotebook(path.join(NOTEBOOKS_DIR, name));
    const withOutputs = notebook.cells.filter((c) => (c.outputs?.length ?? 0) > 0 || (c.execution_count ?? null) !== null);
    t.is(withOutputs.length, 0, `${name} has ${withOutputs.length} cells with outputs`);
    t.is(notebook.metadata.kernelspec?.name, 'clipfreeze-ts', `${name} kernel`);
  }
});

test('notebooks import the package name', (t) => {
  for (const name of notebooks) {
    const source = readNotebook(path.join(NOTEBOOKS_DIR, name)).cells.map((c) => [c.source].flat().join('')).join('\n');
    t.true(source.includes("from 'clipfreeze'"), `${name} imports clipfreeze`);
    t.false(/from '\.\.?\//.test(source), `${name} has no relative imports`);
  }
});

test('notebookProblems finds cell errors', (t) => {
  const problems = notebookProblems({
    cells: [
      { cell_type: 'code', source: '', outputs: [{ output_type: 'stream', name: 'stderr', text: '1:35 - Cannot find module x\n' }] },
      { cell_type: 'code', source: '', outputs: [{ output_type: 'stream', name: 'stderr', text: 'ReferenceError: a is not defined\n    at evalmachine.<anonymous>:3:5\n' }] },
      { cell_type: 'code', source: '', outputs: [{ output_type: 'error', ename: 'Error', evalue: 'boom' }] },
      { cell_type: 'code', source: '', outputs: [{ output_type: 'stream', name: 'stdout', text: 'Error: printed on purpose\n    at nothing\n' }] },
    ],
  });
  t.is(problems.length, 3);
  t.regex(problems[0], /cell 1: TypeScript/);
  t.regex(problems[1], /cell 2: ReferenceError/);
  t.regex(problems[2], /cell 3: Error: boom/);
});

// One serial test per notebook, in file order: 07-comparison reads the runs the others record,
// and each finished test resets ava's inactivity timeout (a notebook takes minutes).
const runsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-notebook-runs-'));
const serialRunTest = runTest === test ? test.serial : test.skip;

for (const name of notebooks) {
  serialRunTest(`notebook ${name.replace(/\.ipynb$/, '')} executes`, async (t) => {
    t.timeout(30 * 60_000);
    const result = await runNotebookCommand(name.replace(/\.ipynb$/, ''));
    t.is(result.status, 0, result.stderr.split('\n').slice(-20).join('\n'));

    const executed = path.join(OUT_DIR, name);
    t.true(fs.existsSync(executed), `${name} executed`);
    t.deepEqual(notebookProblems(readNotebook(executed) as Parameters<typeof notebookProblems>[0]), [], name);
    if (name.startsWith('07-comparison')) t.true(fs.existsSync(path.join(OUT_DIR, 'comparison-report.html')), 'comparison notebook writes the report');

    // The HTML copy must show its figures: Plotly errors surface only in a browser.
    if (!fs.existsSync(CHROMIUM)) return;
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
    try {
      const page = await browser.newPage();
      const pageErrors: string[] = [];
      page.on('pageerror', (err) => pageErrors.push(err.message));
      await page.route('**/*', (route) => (route.request().url().startsWith('file:') ? route.continue() : route.abort()));
      await page.goto(`file://${path.join(OUT_DIR, name.replace(/\.ipynb$/, '.html'))}`);
      await page.waitForLoadState('load');

      const plots = await page.locator('.js-plotly-plot').count();
      const drawn = await page.locator('.js-plotly-plot svg.main-svg').count();
      t.true(plots > 0, `${name} shows a figure`);
      t.true(drawn >= plots, `${name}: ${drawn} SVGs for ${plots} figures`);
      t.deepEqual(pageErrors, [], `${name} page errors`);
    } finally {
      await browser.close();
    }
  });
}

/** Runs `npm run notebooks -- <prefix>` with the test inputs, without blocking the test worker. */
function runNotebookCommand(prefix: string): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('npx', ['tsx', 'scripts/run-notebooks.ts', prefix], {
      cwd: PROJECT_ROOT,
      env: {
        ...process.env,
        CLIPFREEZE_CHECKPOINT: sharedPath('fixtures', 'clip-mini', 'hf-format'),
        CLIPFREEZE_DATA: sharedPath('data', 'chestxray14-sample'),
        CLIPFREEZE_SOURCE_DATA: sharedPath('data', 'natural'),
        CLIPFREEZE_RUNS: runsDir,
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (status) => resolve({ status, stderr }));
  });
}
