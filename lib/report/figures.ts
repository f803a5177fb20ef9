// Plotly figure specs for the report and the notebooks. Each builder returns plain JSON
// ({data, layout}) that Plotly.newPlot takes in a browser and tslab notebooks display, or null
// when the runs hold nothing to draw. Text that comes from run files (method and finding names)
// is HTML-escaped, because Plotly renders a subset of HTML tags inside labels.
import type { LoadedRun, SelectionFile } from './load.ts';
import { paretoFront, type MethodSummary } from './summary.ts';
import type { PlanTable } from './plans.ts';
import { isImagePathUnit, sortUnits, visionLayersOf } from './plans.ts';

export interface FigureSpec {
  /** DOM id in the report, also the figure's anchor. */
  id: string;
  title: string;
  /** One or two sentences under the figure: what is drawn and how to read it. */
  caption: string;
  data: Array<Record<string, unknown>>;
  layout: Record<string, unknown>;
}

const FONT = { family: 'system-ui, sans-serif', size: 12 };

/** Escapes text for Plotly labels, which would otherwise render tags such as <a> or <b>. */
export function plotlyText(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * Returns the height in pixels of a heatmap with `rows` rows, bottom tick labels and a title.
 * Plotly 3 fails with "Something went wrong with axis scaling" when the plot area is too small.
 */
function rowsHeight(rows: number): number {
  return Math.max(260, 160 + 30 * rows);
}

function baseLayout(extra: Record<string, unknown>): Record<string, unknown> {
  return { font: FONT, margin: { l: 70, r: 20, t: 30, b: 60 }, hovermode: 'closest', ...extra };
}

/** Heatmap of test AUROC per finding (columns) and method (rows), averaged over seeds. */
export function perFindingHeatmap(summaries: MethodSummary[], findings: string[]): FigureSpec | null {
  if (summaries.length === 0 || findings.length === 0) return null;

  const z = summaries.map((s) => findings.map((f) => s.perFinding[f]?.mean ?? null));
  const text = z.map((row) => row.map((v) => (v === null ? 'n/a' : v.toFixed(3))));
  return {
    id: 'fig-per-finding',
    title: 'AUROC per finding',
    caption: 'Test AUROC per finding, averaged over seeds. Grey cells: AUROC undefined (a split without positives or negatives).',
    data: [
      {
        type: 'heatmap',
        x: findings.map(plotlyText),
        y: summaries.map((s) => plotlyText(s.method)),
        z,
        text,
        texttemplate: '%{text}',
        hovertemplate: '%{y}<br>%{x}: %{text}<extra></extra>',
        colorscale: 'Viridis',
        zmin: 0.5,
        zmax: 1,
        colorbar: { title: { text: 'AUROC' } },
      },
    ],
    layout: baseLayout({
      height: rowsHeight(summaries.length),
      margin: { l: 140, r: 20, t: 30, b: 110 },
      xaxis: { tickangle: -40 },
      yaxis: { autorange: 'reversed' },
      plot_bgcolor: '#ddd',
    }),
  };
}

/**
 * Mean AUROC against training cost (FLOPs of training plus selection, log axis), one point per
 * method with the spread over seeds as error bars, and the Pareto front as a line.
 */
export function costFigure(summaries: MethodSummary[]): FigureSpec | null {
  const points = summaries.filter((s) => s.meanAuroc.mean !== null && s.flops.mean !== null && s.flops.mean > 0);
  if (points.length === 0) return null;

  const front = paretoFront(points.map((s) => ({ x: s.flops.mean, y: s.meanAuroc.mean })));
  return {
    id: 'fig-cost',
    title: 'AUROC against training cost',
    caption: 'Test mean AUROC against the FLOPs of training plus layer selection (log scale). Error bars: standard deviation over seeds. The line joins the Pareto front: no other method is both cheaper and better. FLOPs are nominal (from layer shapes), so activation-cache hits do not lower them as they lower wall time. Zero-shot costs no training and is not drawn.',
    data: [
      {
        type: 'scatter',
        mode: 'markers+text',
        name: 'methods',
        x: points.map((s) => s.flops.mean),
        y: points.map((s) => s.meanAuroc.mean),
        text: points.map((s) => plotlyText(s.method)),
        textposition: 'top center',
        error_y: { type: 'data', array: points.map((s) => s.meanAuroc.sd ?? 0), visible: true },
        marker: { size: 10 },
        hovertemplate: '%{text}<br>FLOPs %{x:.3s}<br>AUROC %{y:.3f}<extra></extra>',
      },
      {
        type: 'scatter',
        mode: 'lines',
        name: 'Pareto front',
        x: front.map((i) => points[i].flops.mean),
        y: front.map((i) => points[i].meanAuroc.mean),
        line: { dash: 'dot', color: '#d62728' },
        hoverinfo: 'skip',
      },
    ],
    layout: baseLayout({
      height: 420,
      xaxis: { type: 'log', title: { text: 'training + selection FLOPs' } },
      yaxis: { title: { text: 'test mean AUROC' } },
    }),
  };
}

/** Mean AUROC against forgetting (drop in source-domain zero-shot accuracy), one point per method. */
export function forgettingFigure(summaries: MethodSummary[]): FigureSpec | null {
  const points = summaries.filter((s) => s.meanAuroc.mean !== null && s.forgettingDrop.mean !== null);
  if (points.length === 0) return null;

  return {
    id: 'fig-forgetting',
    title: 'AUROC against forgetting',
    caption: 'Test mean AUROC against the mean drop in zero-shot top-1 accuracy on the source-domain sets (before minus after fine-tuning). Left and up is better. Error bars: standard deviation over seeds.',
    data: [
      {
        type: 'scatter',
        mode: 'markers+text',
        x: points.map((s) => s.forgettingDrop.mean),
        y: points.map((s) => s.meanAuroc.mean),
        text: points.map((s) => plotlyText(s.method)),
        textposition: 'top center',
        error_x: { type: 'data', array: points.map((s) => s.forgettingDrop.sd ?? 0), visible: true },
        error_y: { type: 'data', array: points.map((s) => s.meanAuroc.sd ?? 0), visible: true },
        marker: { size: 10 },
        hovertemplate: '%{text}<br>drop %{x:.3f}<br>AUROC %{y:.3f}<extra></extra>',
      },
    ],
    layout: baseLayout({
      height: 420,
      xaxis: { title: { text: 'source accuracy drop' }, zeroline: true },
      yaxis: { title: { text: 'test mean AUROC' } },
    }),
  };
}

/**
 * Method colours: Plotly's default ten (D3 category10), then the lighter ten of D3 category20,
 * so up to 20 methods get distinct colours before they repeat.
 */
const METHOD_COLORS = [
  '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf',
  '#aec7e8', '#ffbb78', '#98df8a', '#ff9896', '#c5b0d5', '#c49c94', '#f7b6d2', '#c7c7c7', '#dbdb8d', '#9edae5',
];
/** Line dash and marker symbol per seed, so the seeds of one method differ in shape, not colour. */
const SEED_DASHES = ['solid', 'dash', 'dot', 'dashdot', 'longdash', 'longdashdot'];
const SEED_SYMBOLS = ['circle', 'square', 'diamond', 'triangle-up', 'x', 'cross'];

/**
 * Training curves: one line per training run, validation AUROC (or training loss) per epoch.
 * Each method has one colour and each seed one line style and marker, and the legend groups
 * the seeds under their method, in `methodOrder` (methods not in it go last).
 */
export function trainingCurves(runs: LoadedRun[], value: 'valMeanAuroc' | 'trainLoss', methodOrder: string[] = []): FigureSpec | null {
  const rank = (method: string) => (methodOrder.includes(method) ? methodOrder.indexOf(method) : methodOrder.length);
  const trained = runs
    .filter((r) => r.history && r.history.epochs.length > 0)
    .sort((a, b) => rank(a.method) - rank(b.method) || (a.seed ?? -1) - (b.seed ?? -1));
  if (trained.length === 0) return null;

  const methods = [...new Set(trained.map((r) => r.method))];
  const seeds = [...new Set(trained.map((r) => r.seed))].sort((a, b) => (a ?? -1) - (b ?? -1));
  const label = value === 'valMeanAuroc' ? 'validation mean AUROC' : 'training loss';
  return {
    id: value === 'valMeanAuroc' ? 'fig-curves-auroc' : 'fig-curves-loss',
    title: value === 'valMeanAuroc' ? 'Validation AUROC per epoch' : 'Training loss per epoch',
    caption: `The ${label} after each epoch, one line per training run: colour by method, line style and marker by seed.`,
    data: trained.map((r) => {
      const color = METHOD_COLORS[methods.indexOf(r.method) % METHOD_COLORS.length];
      const seedIndex = seeds.indexOf(r.seed);
      return {
        type: 'scatter',
        mode: 'lines+markers',
        name: `seed ${r.seed ?? '-'}`,
        legendgroup: plotlyText(r.method),
        legendgrouptitle: { text: plotlyText(r.method) },
        line: { color, dash: SEED_DASHES[seedIndex % SEED_DASHES.length] },
        marker: { color, symbol: SEED_SYMBOLS[seedIndex % SEED_SYMBOLS.length], size: 7 },
        hovertemplate: `${plotlyText(r.method)} seed ${r.seed ?? '-'}<br>epoch %{x}: %{y:.4f}<extra></extra>`,
        x: r.history!.epochs.map((e) => e.epoch),
        y: r.history!.epochs.map((e) => e[value]),
      };
    }),
    layout: baseLayout({
      height: Math.max(380, 60 + 45 * methods.length + 18 * trained.length),
      xaxis: { title: { text: 'epoch' }, dtick: 1 },
      yaxis: { title: { text: label } },
      legend: { tracegroupgap: 8, groupclick: 'toggleitem' },
    }),
  };
}

/**
 * Returns the units that a selection did not score: those in details.unscored and those missing
 * from scores. Strategies write 0 for units they never score (such as the text tower), so a 0 in
 * scores alone does not say whether the unit was scored.
 */
export function unscoredUnits(selection: SelectionFile, units: string[]): Set<string> {
  const listed = selection.details?.unscored;
  const unscored = new Set(Array.isArray(listed) ? listed.map(String) : []);
  for (const unit of units) {
    const score = selection.scores[unit];
    if (typeof score !== 'number' || !Number.isFinite(score)) unscored.add(unit);
  }
  return unscored;
}

/**
 * Heatmap of each strategy's per-unit scores, one row per selection run. Scores are rescaled to
 * [0, 1] per row over the scored units only, because strategies score on different scales, and
 * the hover shows the raw score. Units a strategy did not score get a grey "not scored" cell from a
 * second trace, never a value.
 */
export function strategyScoresHeatmap(runs: LoadedRun[], methodOrder: string[]): FigureSpec | null {
  const selections = runs
    .filter((r) => r.selection && Object.keys(r.selection.scores).length > 0)
    .sort((a, b) => methodOrder.indexOf(a.method) - methodOrder.indexOf(b.method) || (a.seed ?? 0) - (b.seed ?? 0));
  if (selections.length === 0) return null;

  // Units: every scored or unscored name, plus any vision block between them that no run names.
  const named = selections.flatMap((r) => [...Object.keys(r.selection!.scores), ...unscoredUnits(r.selection!, [])]);
  const blocks = Array.from({ length: visionLayersOf(named) }, (_, i) => `vision.block.${i}`);
  const units = sortUnits([...named, ...blocks]).filter(isImagePathUnit);
  const unscored = selections.map((r) => unscoredUnits(r.selection!, units));
  const raw = selections.map((r, i) => units.map((u) => (unscored[i].has(u) ? null : r.selection!.scores[u])));

  // Rescale each row over its scored units. A row whose scores are all equal gets 0.5.
  const z = raw.map((row) => {
    const scored = row.filter((v): v is number => v !== null);
    const lo = Math.min(...scored);
    const hi = Math.max(...scored);
    return row.map((v) => {
      if (v === null) return null;
      return hi > lo ? (v - lo) / (hi - lo) : 0.5;
    });
  });
  const notScored = unscored.map((set) => units.map((u) => (set.has(u) ? 0 : null)));

  const x = units.map(plotlyText);
  const y = selections.map((r) => plotlyText(`${r.method} seed ${r.seed ?? '-'}`));
  return {
    id: 'fig-scores',
    title: 'Strategy scores per layer unit',
    caption: 'Each selection run\'s score per layer unit (darker = more worth training), rescaled to [0, 1] per row over the units it scored. Grey cells: units the strategy did not score. Units run in forward order through the image tower to the task head.',
    data: [
      {
        type: 'heatmap',
        name: 'scaled score',
        x,
        y,
        z,
        customdata: raw,
        hovertemplate: '%{y}<br>%{x}: %{customdata:.4g}<extra></extra>',
        hoverongaps: false,
        // ColorBrewer Blues: near white for the lowest score, dark blue for the highest.
        colorscale: [
          [0, '#f7fbff'],
          [0.5, '#6baed6'],
          [1, '#08306b'],
        ],
        zmin: 0,
        zmax: 1,
        colorbar: { title: { text: 'scaled score' } },
        xgap: 1,
        ygap: 1,
      },
      {
        type: 'heatmap',
        name: 'not scored',
        x,
        y,
        z: notScored,
        text: notScored.map((row) => row.map((v) => (v === null ? '' : 'not scored'))),
        texttemplate: '%{text}',
        hovertemplate: '%{y}<br>%{x}: not scored<extra></extra>',
        hoverongaps: false,
        colorscale: [
          [0, '#bdbdbd'],
          [1, '#bdbdbd'],
        ],
        showscale: false,
        xgap: 1,
        ygap: 1,
      },
    ],
    layout: baseLayout({
      height: rowsHeight(selections.length),
      margin: { l: 180, r: 20, t: 30, b: 110 },
      xaxis: { tickangle: -60 },
      yaxis: { autorange: 'reversed' },
    }),
  };
}

/** Draws each chosen plan as a row of units: frozen, trained or cut off. */
export function plansFigure(table: PlanTable): FigureSpec | null {
  if (table.rows.length === 0 || table.units.length === 0) return null;

  const code = { frozen: 0, trained: 1, 'cut off': 2 } as const;
  const z = table.rows.map((row) => row.states.map((s) => code[s]));
  const text = table.rows.map((row) => row.states);
  return {
    id: 'fig-plans',
    title: 'Freeze plans',
    caption: 'Each method\'s plan per seed as a row of layer units: blue trains, grey stays frozen, red is cut off.',
    data: [
      {
        type: 'heatmap',
        x: table.units.map(plotlyText),
        y: table.rows.map((r) => plotlyText(`${r.method} seed ${r.seed ?? '-'}`)),
        z,
        text,
        hovertemplate: '%{y}<br>%{x}: %{text}<extra></extra>',
        zmin: 0,
        zmax: 2,
        colorscale: [
          [0, '#cccccc'],
          [0.33, '#cccccc'],
          [0.34, '#1f77b4'],
          [0.66, '#1f77b4'],
          [0.67, '#d62728'],
          [1, '#d62728'],
        ],
        showscale: false,
        xgap: 2,
        ygap: 2,
      },
    ],
    layout: baseLayout({
      height: rowsHeight(table.rows.length),
      margin: { l: 180, r: 20, t: 30, b: 110 },
      xaxis: { tickangle: -60 },
      yaxis: { autorange: 'reversed' },
    }),
  };
}
