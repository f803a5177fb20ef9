// Renders the study report: one self-contained HTML file with Plotly and the data inlined, so it
// opens offline and can be mailed or archived as a single file. The page comes from
// templates/report.hbs; Handlebars escapes every value from run files ({{ }}), and the only
// unescaped insertions are Plotly's own bundle and the JSON data, which jsonForScript makes safe
// inside a <script> element.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import Handlebars from 'handlebars';
import { writeFileAtomic } from '../util/atomic.ts';
import { moduleLog } from '../util/log.ts';
import { loadRunSet, studyConfig, type LoadedRun, type SkippedRun } from './load.ts';
import { findingsOf, methodOrder, summarizeMethods, type MethodSummary, type Spread } from './summary.ts';
import { planTable } from './plans.ts';
import { checkPretrained } from './pretrained.ts';
import * as figures from './figures.ts';

const logger = moduleLog('report');
const require = createRequire(import.meta.url);
const TEMPLATES_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'templates');

/** Everything the template shows. Numbers are formatted here so the template stays plain. */
export interface ReportModel {
  title: string;
  generatedAt: string;
  runsDir: string;
  pretrained: { pretrained: boolean; reason: string };
  setup: Array<{ key: string; value: string }>;
  methods: string[];
  summary: Array<Record<string, string>>;
  findings: string[];
  perFinding: Array<{ method: string; cells: string[] }>;
  figures: figures.FigureSpec[];
  missingFigures: string[];
  runs: Array<{ id: string; kind: string; method: string; seed: string }>;
  /** Complete run folders left out because a file in them could not be read. */
  skipped: Array<{ id: string; problem: string }>;
}

/** Formats a number with `digits` decimals, or 'n/a' for null. */
function fixed(value: number | null, digits: number): string {
  return value === null ? 'n/a' : value.toFixed(digits);
}

/** Formats a count with SI suffixes (k, M, G, T), as tables of FLOPs and parameters usually show them. */
export function si(value: number | null): string {
  if (value === null) return 'n/a';
  const units = ['', 'k', 'M', 'G', 'T', 'P', 'E'];
  let v = Math.abs(value);
  let i = 0;
  // 999_999 must print as 1.0M, not 1000k, so the unit is chosen after rounding to 3 digits.
  while (Number(v.toPrecision(3)) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  const sign = value < 0 ? '-' : '';
  return `${sign}${v.toFixed(v >= 100 || i === 0 ? 0 : 1)}${units[i]}`;
}

function meanSd(s: Spread, digits: number): string {
  if (s.mean === null) return 'n/a';
  return s.sd === null ? fixed(s.mean, digits) : `${fixed(s.mean, digits)} ± ${fixed(s.sd, digits)}`;
}

function summaryRow(s: MethodSummary): Record<string, string> {
  return {
    method: s.method,
    kind: s.kind,
    seeds: s.seeds.join(', ') || 'n/a',
    auroc: meanSd(s.meanAuroc, 3),
    ci: s.meanAurocCi ? `${fixed(s.meanAurocCi[0], 3)} to ${fixed(s.meanAurocCi[1], 3)}` : 'n/a',
    range: s.meanAuroc.n > 1 ? `${fixed(s.meanAuroc.min, 3)} to ${fixed(s.meanAuroc.max, 3)}` : 'n/a',
    forgetting: meanSd(s.forgettingDrop, 3),
    params: si(s.trainableParams.mean),
    flops: si(s.flops.mean),
    // The dagger marks wall times that activation-cache hits shortened (see the footnote).
    wall: s.cachedRuns > 0 ? `${fixed(s.wallSeconds.mean, 1)} †` : fixed(s.wallSeconds.mean, 1),
    tensorMemory: mebibytes(s.peakTensorBytes.mean),
    rss: mebibytes(s.peakRssBytes.mean),
  };
}

/** Formats bytes as MiB, with one decimal below 100 MiB. */
function mebibytes(bytes: number | null): string {
  if (bytes === null) return 'n/a';
  const mib = bytes / 2 ** 20;
  return `${mib.toFixed(mib < 100 ? 1 : 0)} MiB`;
}

/** Lists the distinct values that `pick` reads from the runs, or 'not recorded'. */
function distinct(runs: LoadedRun[], pick: (r: LoadedRun) => unknown): string {
  const values = [...new Set(runs.map(pick).filter((v) => v !== undefined && v !== null).map((v) => (typeof v === 'string' ? v : JSON.stringify(v))))];
  return values.length ? values.join('; ') : 'not recorded';
}

/**
 * Describes the backend of a run as 'wasm (fastest present; unavailable: ...)'. environment.json
 * stores an object `{name, tfBackend, reason}` (lib/util/backend.ts), older runs and cost.json
 * a plain name.
 */
export function backendLabel(run: LoadedRun): string | undefined {
  const backend = run.environment?.backend ?? run.cost?.backend;
  if (backend === undefined || backend === null) return undefined;
  if (typeof backend !== 'object') return String(backend);

  const { name, tfBackend, reason } = backend as { name?: unknown; tfBackend?: unknown; reason?: unknown };
  let label = 'unknown backend';
  if (typeof name === 'string') label = name;
  else if (typeof tfBackend === 'string') label = tfBackend;
  return typeof reason === 'string' && reason.length > 0 ? `${label} (${reason})` : label;
}

function setupRows(runs: LoadedRun[], skipped: SkippedRun[], study: Record<string, unknown> | null): Array<{ key: string; value: string }> {
  const env = (r: LoadedRun) => r.environment ?? {};
  const packages = (r: LoadedRun) => {
    const p = env(r).packages as Record<string, string> | undefined;
    return p ? Object.entries(p).map(([k, v]) => `${k} ${v}`).join(', ') : undefined;
  };

  return [
    { key: 'Study', value: typeof study?.name === 'string' ? study.name : 'not recorded' },
    { key: 'Checkpoint', value: distinct(runs, (r) => r.config.checkpoint) },
    { key: 'Checkpoint SHA-256', value: distinct(runs, (r) => r.config.checkpointSha256 ?? env(r).checkpointSha256) },
    { key: 'Dataset', value: distinct(runs, (r) => r.config.dataset) },
    { key: 'Data', value: distinct(runs, (r) => r.config.data) },
    { key: 'Test images', value: distinct(runs, (r) => r.metrics?.n) },
    { key: 'Seeds', value: [...new Set(runs.map((r) => r.seed).filter((s) => s !== null))].sort((a, b) => a! - b!).join(', ') || 'not recorded' },
    { key: 'Backend', value: distinct(runs, backendLabel) },
    { key: 'Node.js', value: distinct(runs, (r) => env(r).node) },
    { key: 'Packages', value: distinct(runs, packages) },
    { key: 'Git commit', value: distinct(runs, (r) => env(r).gitCommit) },
    { key: 'Runs', value: String(runs.length) },
    {
      key: 'Skipped runs',
      value: skipped.length === 0 ? '0' : `${skipped.length} unreadable (${skipped.map((r) => r.id).join(', ')}); see the Runs section`,
    },
  ];
}

/** Builds the report model from the complete runs under `runsDir`. */
export function buildReportModel(runsDir: string): ReportModel {
  const { runs, skipped } = loadRunSet(runsDir);
  if (runs.length === 0 && skipped.length > 0) {
    throw new Error(`No readable runs in ${runsDir}: all ${skipped.length} complete run folders were skipped. First problem: ${skipped[0].problem}`);
  }
  if (runs.length === 0) {
    throw new Error(`No complete runs in ${runsDir}: a run folder counts once it has complete.json. Run a study first (clipfreeze study).`);
  }
  const study = studyConfig(runsDir);
  const order = methodOrder(runs);
  const summaries = summarizeMethods(runs);
  const findings = findingsOf(runs);

  // Figures draw only the methods in the summary, so runs without a test evaluation (such as
  // search trials recorded beside the study's runs) do not crowd the curves and plans.
  const summarized = new Set(summaries.map((s) => s.method));
  const drawn = runs.filter((r) => summarized.has(r.method));

  const candidates: Array<[string, figures.FigureSpec | null]> = [
    ['AUROC per finding', figures.perFindingHeatmap(summaries, findings)],
    ['AUROC against training cost', figures.costFigure(summaries)],
    ['AUROC against forgetting', figures.forgettingFigure(summaries)],
    ['Validation AUROC per epoch', figures.trainingCurves(drawn, 'valMeanAuroc', order)],
    ['Training loss per epoch', figures.trainingCurves(drawn, 'trainLoss', order)],
    ['Strategy scores per layer unit', figures.strategyScoresHeatmap(drawn, order)],
    ['Freeze plans', figures.plansFigure(planTable(drawn, order))],
  ];

  return {
    title: typeof study?.name === 'string' ? `clipfreeze study: ${study.name}` : 'clipfreeze study report',
    generatedAt: new Date().toISOString(),
    runsDir: path.resolve(runsDir),
    pretrained: checkPretrained(study, runs),
    setup: setupRows(runs, skipped, study),
    methods: order,
    summary: summaries.map(summaryRow),
    findings,
    perFinding: summaries.map((s) => ({ method: s.method, cells: findings.map((f) => fixed(s.perFinding[f]?.mean ?? null, 3)) })),
    figures: candidates.map(([, spec]) => spec).filter((f): f is figures.FigureSpec => f !== null),
    missingFigures: candidates.filter(([, spec]) => spec === null).map(([name]) => name),
    runs: runs.map((r) => ({ id: r.id, kind: r.kind, method: r.method, seed: r.seed === null ? '-' : String(r.seed) })),
    skipped: skipped.map((r) => ({ id: r.id, problem: r.problem })),
  };
}

/**
 * Serialises `value` for a <script type="application/json"> element: `<`, `>`, `&` and the
 * JavaScript line separators become \u escapes, so no string in the data can close the
 * element or start a comment.
 */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

function plotlyBundle(): string {
  const file = require.resolve('plotly.js-dist-min/plotly.min.js');
  const source = fs.readFileSync(file, 'utf8');
  if (/<\/script/i.test(source)) throw new Error(`${file} contains '</script', which would end the inlined script early; use another plotly.js-dist-min version.`);

  // HTML forbids raw control characters. plotly.js-dist-min 3.x has two, both inside string
  // literals (file-format magic numbers), where a \u escape is the same character.
  return source.replace(/[\x00-\x08\x0B\x0E-\x1F\x7F-\x9F]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Renders the report model to HTML with templates/report.hbs. */
export function renderReportHtml(model: ReportModel, templatesDir = TEMPLATES_DIR): string {
  const templateFile = path.join(templatesDir, 'report.hbs');
  const template = Handlebars.compile(fs.readFileSync(templateFile, 'utf8'), { strict: true });
  return template({
    ...model,
    plotlyJs: new Handlebars.SafeString(plotlyBundle()),
    figuresJson: new Handlebars.SafeString(jsonForScript(model.figures.map(({ id, data, layout }) => ({ id, data, layout })))),
    modelJson: new Handlebars.SafeString(jsonForScript({ summary: model.summary, setup: model.setup, runs: model.runs, skipped: model.skipped })),
  });
}

/** Loads the runs under `runsDir`, renders the report and writes it atomically to `outFile`. */
export function writeReport(runsDir: string, outFile: string): ReportModel {
  const model = buildReportModel(runsDir);
  const html = renderReportHtml(model);
  fs.mkdirSync(path.dirname(path.resolve(outFile)), { recursive: true });
  writeFileAtomic(outFile, html);
  logger.info({ out: outFile, methods: model.methods.length, runs: model.runs.length, skipped: model.skipped.length, figures: model.figures.length, bytes: html.length }, 'report written');
  if (!model.pretrained.pretrained) logger.warn(model.pretrained.reason + ' The report warns that its numbers say nothing about CLIP.');
  return model;
}
