// HTML snippets for showing report figures and tables in tslab notebooks:
//
//   import * as tslab from 'tslab';
//   tslab.display.html(plotlyLoaderHtml());             // once per notebook: inlines Plotly
//   tslab.display.html(figureHtml(costFigure(summaries)));
//
// Plotly is inlined rather than loaded from a CDN, so executed notebooks open offline.
// A figure shows once the loader's cell output has run: in JupyterLab for a trusted notebook,
// and in nbconvert's HTML export.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import type { FigureSpec } from './figures.ts';
import { jsonForScript } from './render.ts';

const require = createRequire(import.meta.url);

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Returns a <script> element with the Plotly bundle, which later figureHtml outputs use. */
export function plotlyLoaderHtml(): string {
  const source = fs.readFileSync(require.resolve('plotly.js-dist-min/plotly.min.js'), 'utf8');
  return `<script>${source.replace(/<\/script/gi, '<\\/script')}</script><p>Plotly ${escapeHtml(String(/v(\d+\.\d+\.\d+)/.exec(source)?.[1] ?? ''))} loaded.</p>`;
}

/** Returns a <div> and a script that draws `spec` with Plotly, or a note when `spec` is null. */
export function figureHtml(spec: FigureSpec | null, height?: number): string {
  if (!spec) return '<p><em>Nothing to draw: no run recorded the data for this figure.</em></p>';

  const id = `${spec.id}-${Math.random().toString(36).slice(2, 10)}`;
  const margin = { ...(spec.layout.margin as Record<string, number> | undefined), t: 50 };
  const layout = { ...spec.layout, margin, title: { text: spec.title }, ...(height ? { height } : {}) };
  return (
    `<div id="${id}"></div>` +
    `<script>(function () { var f = ${jsonForScript({ data: spec.data, layout })};` +
    ` if (window.Plotly) Plotly.newPlot('${id}', f.data, f.layout, { displaylogo: false });` +
    ` else document.getElementById('${id}').textContent = 'Plotly is not loaded: run the cell with plotlyLoaderHtml() first.'; })();</script>` +
    `<p>${escapeHtml(spec.caption)}</p>`
  );
}

// Inline styles, because JupyterLab's stylesheet sets `table-layout: fixed` and
// `white-space: normal` on output tables, which squeezes a wide table's first column to one
// character per line. Inline styles take precedence over those class rules.
const WRAPPER_STYLE = 'overflow-x: auto; max-width: 100%';
const TABLE_STYLE = 'table-layout: auto; border-collapse: collapse; margin: 0';
const CELL_STYLE = 'white-space: nowrap';
const FIRST_CELL_STYLE = 'white-space: nowrap; text-align: left; position: sticky; left: 0; z-index: 1; background: var(--jp-layout-color0, #fff)';

/**
 * Returns an HTML table of `rows` with the given columns, with every cell escaped. Cells do not
 * wrap, and a table wider than the output scrolls sideways with the first column kept in view.
 */
export function tableHtml(rows: Array<Record<string, unknown>>, columns = Object.keys(rows[0] ?? {})): string {
  const format = (v: unknown): string => {
    if (v === null || v === undefined) return 'n/a';
    if (typeof v === 'number' && !Number.isInteger(v)) return v.toFixed(4);
    return String(v);
  };
  const cell = (tag: 'th' | 'td', text: string, i: number) => `<${tag} style="${i === 0 ? FIRST_CELL_STYLE : CELL_STYLE}">${escapeHtml(text)}</${tag}>`;

  const head = columns.map((c, i) => cell('th', c, i)).join('');
  const body = rows.map((r) => `<tr>${columns.map((c, i) => cell('td', format(r[c]), i)).join('')}</tr>`).join('');
  return `<div style="${WRAPPER_STYLE}"><table style="${TABLE_STYLE}"><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table></div>`;
}
