import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import test from 'ava';
import { parse } from 'parse5';
import { loadRunSet, loadRuns } from '../../lib/report/load.ts';
import { paretoFront, spread, summarizeMethods } from '../../lib/report/summary.ts';
import { planTable, sortUnits } from '../../lib/report/plans.ts';
import { checkPretrained } from '../../lib/report/pretrained.ts';
import { buildReportModel, jsonForScript, renderReportHtml, si, writeReport } from '../../lib/report/render.ts';
import { RunRecord } from '../../lib/runs/record.ts';
import { strategyScoresHeatmap, trainingCurves } from '../../lib/report/figures.ts';
import type { LoadedRun, SelectionFile } from '../../lib/report/load.ts';
import { FINDINGS, SEEDS, writeSyntheticRuns } from './synthetic.ts';
import { PROJECT_ROOT } from '../helpers/shared.ts';

const METHODS = ['zero-shot', 'full', 'truncate-2', 'gradient-rgn', 'similarity-cka'];

type Node = { nodeName: string; attrs?: Array<{ name: string; value: string }>; childNodes?: Node[]; value?: string; content?: Node };

function walk(node: Node, visit: (n: Node) => void): void {
  visit(node);
  for (const child of node.childNodes ?? []) walk(child, visit);
  if (node.content) walk(node.content, visit);
}

function textOf(node: Node): string {
  if (node.nodeName === '#text') return node.value ?? '';
  return (node.childNodes ?? []).map(textOf).join('');
}

function byId(root: Node, id: string): Node | undefined {
  let found: Node | undefined;
  walk(root, (n) => {
    if (!found && n.attrs?.some((a) => a.name === 'id' && a.value === id)) found = n;
  });
  return found;
}

test('loadRuns skips incomplete runs', (t) => {
  const dir = writeSyntheticRuns();
  const runs = loadRuns(dir);
  t.false(runs.some((r) => r.method === 'crashed-method'));
  t.is(runs.filter((r) => r.metrics).length, METHODS.length * SEEDS.length);
});

test('loadRuns rejects missing directory', (t) => {
  const error = t.throws(() => loadRuns('/nonexistent/runs-dir'));
  t.regex(error!.message, /Runs directory not found: \/nonexistent\/runs-dir/);
});

test('loadRunSet skips run without method', (t) => {
  const dir = writeSyntheticRuns();
  const bad = path.join(dir, 'train-bad');
  fs.mkdirSync(bad);
  fs.writeFileSync(path.join(bad, 'config.json'), JSON.stringify({ kind: 'train', seed: 0 }));
  fs.writeFileSync(path.join(bad, 'complete.json'), JSON.stringify({ kind: 'train', runId: 'train-bad', finishedAt: '', files: [] }));
  const { runs, skipped } = loadRunSet(dir);
  t.deepEqual(skipped.map((r) => r.id), ['train-bad']);
  t.regex(skipped[0].problem, /train-bad has no 'method'/);
  t.is(runs.filter((r) => r.metrics).length, METHODS.length * SEEDS.length);
});

test('loadRunSet skips invalid metrics.json', (t) => {
  const dir = writeSyntheticRuns();
  fs.writeFileSync(path.join(dir, 'train-full-1', 'metrics.json'), '{"split": "test", "n": 4');
  const { runs, skipped } = loadRunSet(dir);
  t.deepEqual(skipped.map((r) => r.id), ['train-full-1']);
  t.regex(skipped[0].problem, /train-full-1\/metrics\.json/);
  t.false(runs.some((r) => r.id === 'train-full-1'));
  t.true(runs.some((r) => r.id === 'train-full-0'));
});

test('loadRunSet skips missing listed file', (t) => {
  const dir = writeSyntheticRuns();
  fs.rmSync(path.join(dir, 'train-truncate-2-0', 'history.json'));
  const { skipped } = loadRunSet(dir);
  t.deepEqual(skipped.map((r) => r.id), ['train-truncate-2-0']);
  t.regex(skipped[0].problem, /lists history\.json, which is missing/);
});

test('loadRunSet skips invalid complete.json', (t) => {
  const dir = writeSyntheticRuns();
  fs.writeFileSync(path.join(dir, 'zero-shot-zero-shot-0', 'complete.json'), 'not json');
  const { skipped } = loadRunSet(dir);
  t.deepEqual(skipped.map((r) => r.id), ['zero-shot-zero-shot-0']);
  t.regex(skipped[0].problem, /complete\.json/);
});

test('report counts skipped runs in setup', (t) => {
  const dir = writeSyntheticRuns();
  fs.writeFileSync(path.join(dir, 'train-full-1', 'metrics.json'), '{');
  fs.rmSync(path.join(dir, 'train-truncate-2-0', 'history.json'));
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-out-')), 'report.html');
  const model = writeReport(dir, out);

  const row = model.setup.find((r) => r.key === 'Skipped runs')?.value ?? '';
  t.regex(row, /^2 unreadable \(train-full-1, train-truncate-2-0\)/);
  t.deepEqual(model.skipped.map((r) => r.id), ['train-full-1', 'train-truncate-2-0']);
  t.true(fs.readFileSync(out, 'utf8').includes('id="skipped-table"'), 'the report lists the skipped folders');
  t.deepEqual(model.summary.find((r) => r.method === 'full')?.seeds, '0');
});

test('report command survives corrupt run', (t) => {
  const dir = writeSyntheticRuns({ methods: ['zero-shot', 'full'], seeds: [0] });
  fs.writeFileSync(path.join(dir, 'train-full-0', 'metrics.json'), 'not json');
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-out-')), 'report.html');

  const result = spawnSync(process.execPath, [path.join(PROJECT_ROOT, 'bin', 'clipfreeze.js'), 'report', '--runs', dir, '--out', out], { encoding: 'utf8' });
  t.is(result.status, 0, result.stderr);
  t.is(JSON.parse(result.stdout).skipped, 1);
  t.true(result.stderr.includes(path.join(dir, 'train-full-0')), 'the warning names the folder');
  t.true(result.stderr.includes('metrics.json'), 'the warning names the file');
  t.true(fs.existsSync(out));
});

test('spread computes sample standard deviation', (t) => {
  const s = spread([1, 2, 3, null, Number.NaN]);
  t.is(s.mean, 2);
  t.is(s.sd, 1);
  t.is(s.n, 3);
  t.is(spread([0.5]).sd, null);
  t.is(spread([null]).mean, null);
});

test('summarizeMethods groups seeds per method', (t) => {
  const summaries = summarizeMethods(loadRuns(writeSyntheticRuns()));
  t.deepEqual(summaries.map((s) => s.method), METHODS);

  const full = summaries.find((s) => s.method === 'full')!;
  t.deepEqual(full.seeds, SEEDS);
  t.is(full.meanAuroc.n, 2);
  // Synthetic full runs: quality 0.60 + 0.01 * seed, mean AUROC = quality + 0.04.
  t.true(Math.abs(full.meanAuroc.mean! - 0.645) < 1e-9);
  t.true(Math.abs(full.meanAuroc.sd! - Math.SQRT1_2 * 0.01) < 1e-9);
  t.is(full.perFinding.Hernia.mean, null);
});

test('summarizeMethods adds selection cost', (t) => {
  const summaries = summarizeMethods(loadRuns(writeSyntheticRuns()));
  const cka = summaries.find((s) => s.method === 'similarity-cka')!;
  // Method index 3: training FLOPs 4e10 plus 2e9 for the selection.
  t.is(cka.flops.mean, 4.2e10);
  t.is(cka.kind, 'select+train');
  // Wall time: 40 s training plus 3 s (seed 0) or 4 s (seed 1) of selection.
  t.is(cka.wallSeconds.mean, 43.5);
});

test('paretoFront keeps undominated points', (t) => {
  const points = [
    { x: 1, y: 0.6 },
    { x: 2, y: 0.55 },
    { x: 3, y: 0.7 },
    { x: 3, y: 0.65 },
    { x: 5, y: 0.8 },
    { x: null, y: 0.99 },
  ];
  t.deepEqual(paretoFront(points), [0, 2, 4]);
});

test('sortUnits follows forward order', (t) => {
  const sorted = sortUnits(['head', 'vision.block.10', 'text.embed', 'vision.head', 'vision.block.2', 'logit_scale', 'vision.embed']);
  t.deepEqual(sorted, ['vision.embed', 'vision.block.2', 'vision.block.10', 'vision.head', 'text.embed', 'logit_scale', 'head']);
});

test('planTable marks cut-off blocks', (t) => {
  const runs = loadRuns(writeSyntheticRuns());
  const table = planTable(runs, METHODS);
  const truncated = table.rows.find((r) => r.method === 'truncate-2')!;
  const state = (unit: string) => truncated.states[table.units.indexOf(unit)];
  t.is(state('vision.block.1'), 'frozen');
  t.is(state('vision.block.2'), 'cut off');
  t.is(state('vision.block.3'), 'cut off');
  t.is(state('head'), 'trained');
  t.is(table.rows.filter((r) => r.method === 'similarity-cka').length, SEEDS.length);
});

test('checkPretrained flags fixture path', (t) => {
  const runs = loadRuns(writeSyntheticRuns());
  t.false(checkPretrained(null, runs).pretrained);
});

test('checkPretrained honours pretrained flag', (t) => {
  const flagged = loadRuns(writeSyntheticRuns({ checkpoint: '/models/ViT-B-32', pretrained: false }));
  t.false(checkPretrained(null, flagged).pretrained);
  const real = loadRuns(writeSyntheticRuns({ checkpoint: '/models/ViT-B-32' }));
  t.true(checkPretrained(null, real).pretrained);
  t.false(checkPretrained({ pretrained: false }, real).pretrained);
});

test('si formats counts with prefixes', (t) => {
  t.is(si(999_999), '1.0M');
  t.is(si(77_800_000_000), '77.8G');
  t.is(si(512), '512');
  t.is(si(0), '0');
  t.is(si(null), 'n/a');
});

test('jsonForScript escapes closing tags', (t) => {
  const json = jsonForScript({ name: '</script><!-- & \u2028' });
  t.false(json.includes('<'));
  t.false(json.includes('>'));
  t.false(json.includes('\u2028'));
  t.deepEqual(JSON.parse(json), { name: '</script><!-- & \u2028' });
});

test('report is valid HTML naming methods', (t) => {
  const dir = writeSyntheticRuns();
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-out-')), 'report.html');
  writeReport(dir, out);
  const html = fs.readFileSync(out, 'utf8');

  const errors: string[] = [];
  const doc = parse(html, { onParseError: (e) => errors.push(`${e.code} at line ${e.startLine}`) }) as unknown as Node;
  t.deepEqual(errors, []);

  const summary = byId(doc, 'summary-table');
  t.truthy(summary);
  const text = textOf(summary!);
  for (const method of METHODS) t.true(text.includes(method), `summary table names ${method}`);

  const perFinding = textOf(byId(doc, 'per-finding-table')!);
  for (const finding of FINDINGS) t.true(perFinding.includes(finding), `per-finding table names ${finding}`);

  t.truthy(byId(doc, 'not-pretrained'));
  t.true(textOf(byId(doc, 'setup-table')!).includes('ab'.repeat(32)), 'setup names the checkpoint hash');
});

test('report is self-contained', (t) => {
  const html = renderReportHtml(buildReportModel(writeSyntheticRuns()));
  t.false(/<script[^>]+src=/i.test(html), 'no external scripts');
  t.false(/<link[^>]+href=/i.test(html), 'no external stylesheets');
  t.true(html.includes('Plotly'), 'Plotly is inlined');
});

test('report omits warning when pretrained', (t) => {
  const html = renderReportHtml(buildReportModel(writeSyntheticRuns({ checkpoint: '/models/ViT-B-32', pretrained: true })));
  t.false(html.includes('id="not-pretrained"'));
});

test('report escapes hostile method names', (t) => {
  const hostile = '<img src=x onerror=alert(1)>';
  const model = buildReportModel(writeSyntheticRuns({ extraMethods: [hostile, '</script><b>x</b>'] }));
  const html = renderReportHtml(model);
  t.false(html.includes(hostile));
  t.true(html.includes('&lt;img src&#x3D;x onerror&#x3D;alert(1)&gt;'));

  // Nothing in the inlined data may close its <script> element early.
  const dataStart = html.indexOf('<script type="application/json" id="report-figures">');
  const dataEnd = html.indexOf('</script>', dataStart);
  const json = html.slice(html.indexOf('>', dataStart) + 1, dataEnd);
  const figures = JSON.parse(json) as Array<{ data: Array<{ y?: string[] }> }>;
  const labels = figures.flatMap((f) => f.data.flatMap((d) => d.y ?? []));
  t.true(labels.some((l) => String(l).includes('&lt;img')), 'Plotly labels are HTML-escaped');
});

test('report figures skip unevaluated runs', (t) => {
  const dir = writeSyntheticRuns({ methods: ['full'], seeds: [0] });
  const trial = new RunRecord(dir, 'train-search-trial-0');
  trial.writeJson('config.json', { kind: 'train', method: 'search-trial', seed: 0, plan: { train: ['head'], truncate: 0 } });
  trial.writeJson('history.json', { epochs: [{ epoch: 1, trainLoss: 0.6, valMeanAuroc: 0.6, lr: 1e-4, seconds: 1 }] });
  trial.markComplete('train', ['config.json', 'history.json']);

  const model = buildReportModel(dir);
  const names = (id: string) => (model.figures.find((f) => f.id === id)?.data ?? []).map((d) => `${String(d.legendgroup ?? '')} ${String(d.name ?? d.y)}`);
  t.false(names('fig-curves-auroc').some((n) => n.includes('search-trial')), 'curves leave the trial out');
  t.false(names('fig-plans').some((n) => n.includes('search-trial')), 'plans leave the trial out');
  t.true(names('fig-curves-auroc').some((n) => n.includes('full')), 'curves draw the evaluated run');
});

test('setup shows backend with reason', (t) => {
  const model = buildReportModel(writeSyntheticRuns({ methods: ['full'], seeds: [0] }));
  const backend = model.setup.find((row) => row.key === 'Backend')?.value;
  t.is(backend, 'wasm (fastest present; unavailable: node (not installed))');
});

function selectRun(selection: SelectionFile): LoadedRun {
  return {
    id: 'select-search-0', dir: '/runs/select-search-0', kind: 'select', method: 'search', seed: 0, config: {},
    environment: null, metrics: null, cost: null, forgetting: null, history: null, selection,
  };
}

test('scores heatmap blanks unscored units', (t) => {
  // Search scores are negative here. Head is written as 0 but listed as unscored, and
  // vision.block.1 is missing from scores.
  const run = selectRun({
    strategy: 'search',
    plan: { train: ['head'], truncate: 0 },
    scores: { 'vision.embed': -0.008, 'vision.block.0': -0.005, 'vision.block.2': -0.004, 'vision.head': -0.006, head: 0, 'text.embed': 0 },
    cost: { wallSeconds: 1, flops: 1, imagesSeen: 1 },
    details: { unscored: ['text.embed', 'head'] },
  });
  const spec = strategyScoresHeatmap([run], ['search'])!;
  const [scores, notScored] = spec.data as Array<{ x: string[]; z: Array<Array<number | null>> }>;
  const cell = (trace: { x: string[]; z: Array<Array<number | null>> }, unit: string) => trace.z[0][trace.x.indexOf(unit)];

  t.is(cell(scores, 'head'), null);
  t.is(cell(scores, 'vision.block.1'), null);
  t.not(cell(notScored, 'head'), null);
  t.not(cell(notScored, 'vision.block.1'), null);
  t.is(cell(notScored, 'vision.embed'), null);
  t.is(cell(scores, 'vision.block.2'), 1);
  t.is(cell(scores, 'vision.embed'), 0);
});

test('training curves colour by method', (t) => {
  // Seven trained methods over two seeds: 14 traces, more than Plotly's ten default colours.
  const methods = ['full', 'truncate-1', 'truncate-2', 'head-only', 'last-2', 'last-4', 'embed-only'];
  const runs = loadRuns(writeSyntheticRuns({ methods, seeds: SEEDS }));
  const spec = trainingCurves(runs, 'valMeanAuroc')!;
  type Trace = { legendgroup: string; name: string; line: { color: string; dash: string } };
  const traces = spec.data as unknown as Trace[];
  t.is(traces.length, methods.length * SEEDS.length);

  const colorOf = new Map<string, Set<string>>();
  for (const trace of traces) colorOf.set(trace.legendgroup, (colorOf.get(trace.legendgroup) ?? new Set()).add(trace.line.color));
  t.deepEqual([...colorOf.keys()].sort(), [...methods].sort());
  for (const [method, colors] of colorOf) t.is(colors.size, 1, `${method} has one colour`);
  t.is(new Set(traces.map((trace) => trace.line.color)).size, methods.length, 'each method has its own colour');

  const full = traces.filter((trace) => trace.legendgroup === 'full');
  t.not(full[0].line.dash, full[1].line.dash, 'seeds differ in line style');
  t.deepEqual(full.map((trace) => trace.name), ['seed 0', 'seed 1']);

  const ordered = trainingCurves(runs, 'valMeanAuroc', [...methods].reverse())!.data as unknown as Trace[];
  t.is(ordered[0].legendgroup, 'embed-only', 'legend follows the method order');
});

test('summary shows peak tensor memory', (t) => {
  const dir = writeSyntheticRuns();
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-out-')), 'report.html');
  const model = writeReport(dir, out);
  const row = (method: string) => model.summary.find((r) => r.method === method)!;

  // Method index 1 (full) peaks at 2e8 bytes, index 2 (truncate-2) at 3e8 bytes.
  t.is(row('full').tensorMemory, '191 MiB');
  t.is(row('truncate-2').tensorMemory, '286 MiB');
  t.is(row('zero-shot').tensorMemory, 'n/a');

  const doc = parse(fs.readFileSync(out, 'utf8')) as unknown as Node;
  const header = textOf(byId(doc, 'summary-table')!);
  t.true(header.includes('peak RSS (process)'), 'the RSS column says it is process-wide');
  t.regex(textOf(byId(doc, 'note-rss')!), /whole process/);
});

test('summary marks cached wall time', (t) => {
  const dir = writeSyntheticRuns();
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-out-')), 'report.html');
  const model = writeReport(dir, out);
  const wall = (method: string) => model.summary.find((r) => r.method === method)!.wall;

  t.regex(wall('gradient-rgn'), /†$/);
  t.notRegex(wall('full'), /†/);
  const doc = parse(fs.readFileSync(out, 'utf8')) as unknown as Node;
  t.regex(textOf(byId(doc, 'note-wall')!), /FLOPs are nominal/);
});

test('report rejects empty runs directory', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-empty-'));
  const error = t.throws(() => buildReportModel(dir));
  t.regex(error!.message, /No complete runs in/);
});
