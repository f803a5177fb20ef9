// Opens the rendered report in headless Chromium with the network cut off, waits for Plotly,
// checks that every figure drew its SVG, and saves a screenshot to reports/ci/report.png for CI.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { chromium, type Browser, type Page } from 'playwright-core';
import { writeReport } from '../../lib/report/render.ts';
import { tableHtml } from '../../lib/report/notebook.ts';
import { PROJECT_ROOT } from '../helpers/shared.ts';
import { writeSyntheticRuns } from './synthetic.ts';

const CHROMIUM = process.env.CLIPFREEZE_CHROMIUM ?? '/usr/bin/chromium';
const SCREENSHOT = path.join(PROJECT_ROOT, 'reports', 'ci', 'report.png');

// Chromium is a Debian package that .ci/run installs, so CI fails without it; elsewhere the test skips.
const hasChromium = fs.existsSync(CHROMIUM);
if (!hasChromium && process.env.CI) throw new Error(`Chromium not found at ${CHROMIUM}; install the Debian package 'chromium' or set CLIPFREEZE_CHROMIUM.`);
if (!hasChromium) console.warn(`SKIP: ${CHROMIUM} not found; the headless report test is skipped.`);
const browserTest = hasChromium ? test : test.skip;

async function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      // Playwright passes a fresh temporary --user-data-dir itself.
    ],
  });
}

browserTest('report renders every figure offline', async (t) => {
  await renderAndCheck(t, writeSyntheticRuns(), SCREENSHOT);
});

// One row per heatmap: Plotly fails on a plot area that is too small.
browserTest('report renders single-run figures', async (t) => {
  await renderAndCheck(t, writeSyntheticRuns({ methods: ['similarity-cka'], seeds: [0] }), null);
});

/** Table layout after scrolling the table's container to its right end. */
interface TableLayout {
  /** Text lines in each first-column body cell (1 when the method name does not wrap). */
  firstColumnLines: number[];
  /** Whether the table is wider than its container, which then scrolls. */
  scrolls: boolean;
  /** Left edge of the first body cell minus the container's left edge, in CSS pixels. */
  firstCellOffset: number;
  /** Right edge of the last header cell minus the container's right edge, in CSS pixels. */
  lastHeaderOverhang: number;
}

// Runs in the page. Plain JavaScript text, because the project compiles without DOM types and
// tsx would wrap named inner functions in a helper that the page lacks.
const TABLE_LAYOUT_SCRIPT = `(selector) => {
  const table = document.querySelector(selector);
  const container = table.parentElement;
  const firstColumnLines = [...table.tBodies[0].rows].map((row) => {
    const range = document.createRange();
    range.selectNodeContents(row.cells[0]);
    return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
  });

  container.scrollLeft = container.scrollWidth;
  const box = container.getBoundingClientRect();
  const headers = table.tHead.rows[0].cells;
  return {
    firstColumnLines,
    scrolls: container.scrollWidth > container.clientWidth,
    firstCellOffset: table.tBodies[0].rows[0].cells[0].getBoundingClientRect().left - box.left,
    lastHeaderOverhang: headers[headers.length - 1].getBoundingClientRect().right - box.right,
  };
}`;

async function tableLayout(page: Page, tableSelector: string): Promise<TableLayout> {
  return page.evaluate(`(${TABLE_LAYOUT_SCRIPT})(${JSON.stringify(tableSelector)})`) as Promise<TableLayout>;
}

const CHESTXRAY14_FINDINGS = [
  'Atelectasis', 'Cardiomegaly', 'Effusion', 'Infiltration', 'Mass', 'Nodule', 'Pneumonia', 'Pneumothorax',
  'Consolidation', 'Edema', 'Emphysema', 'Fibrosis', 'Pleural_Thickening', 'Hernia',
];

browserTest('report table keeps method column visible', async (t) => {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-browser-')), 'report.html');
  writeReport(writeSyntheticRuns(), out);

  const browser = await launch();
  try {
    // Narrower than the per-finding table, as on a laptop with the window split.
    const page = await browser.newPage({ viewport: { width: 560, height: 900 } });
    await page.goto(`file://${out}`);
    const layout = await tableLayout(page, '#per-finding-table');
    t.true(layout.firstColumnLines.every((n) => n === 1), `method cells span ${layout.firstColumnLines.join(', ')} lines`);
    t.true(layout.scrolls, 'the table scrolls sideways');
    t.true(Math.abs(layout.firstCellOffset) <= 1, `method column is ${layout.firstCellOffset}px off the left edge after scrolling`);
    t.true(layout.lastHeaderOverhang <= 1, `last finding is ${layout.lastHeaderOverhang}px past the right edge`);
  } finally {
    await browser.close();
  }
});

// The table rules of JupyterLab's stylesheet, trimmed from an nbconvert lab-template HTML
// export: a fixed table layout and wrapping cells.
const JUPYTER_TABLE_CSS = `
  .jp-RenderedHTMLCommon { font-family: system-ui, sans-serif; font-size: 14px; }
  .jp-RenderedHTMLCommon table { border-collapse: collapse; border-spacing: 0; border: none; font-size: 12px; table-layout: fixed; margin-left: auto; margin-right: auto; }
  .jp-RenderedHTMLCommon td, .jp-RenderedHTMLCommon th, .jp-RenderedHTMLCommon tr { vertical-align: middle; padding: 0.5em; line-height: normal; white-space: normal; max-width: none; border: none; }
  .jp-RenderedHTMLCommon td, .jp-RenderedHTMLCommon th { text-align: right; }
  .jp-OutputArea-output { height: auto; overflow: auto; width: 600px; }
`;

browserTest('notebook table survives Jupyter styles', async (t) => {
  const methods = ['zero-shot', 'full', 'truncate-1', 'head-only', 'gradient-rgn', 'search', 'similarity-mmd'];
  const rows = methods.map((method, i) => Object.fromEntries([['method', method], ...CHESTXRAY14_FINDINGS.map((f, j) => [f, 0.5 + 0.01 * i + 0.001 * j])]));
  const html = `<!DOCTYPE html><html><head><style>${JUPYTER_TABLE_CSS}</style></head><body>` +
    `<div class="jp-RenderedHTMLCommon jp-OutputArea-output">${tableHtml(rows)}</div></body></html>`;

  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 900, height: 600 } });
    await page.setContent(html);
    const layout = await tableLayout(page, 'table');
    t.true(layout.firstColumnLines.every((n) => n === 1), `method cells span ${layout.firstColumnLines.join(', ')} lines`);
    t.true(layout.scrolls, 'the table scrolls sideways');
    t.true(Math.abs(layout.firstCellOffset) <= 1, `method column is ${layout.firstCellOffset}px off the left edge after scrolling`);
    t.true(layout.lastHeaderOverhang <= 1, `last finding is ${layout.lastHeaderOverhang}px past the right edge`);
  } finally {
    await browser.close();
  }
});

async function renderAndCheck(t: ExecutionContext, runsDir: string, screenshot: string | null): Promise<void> {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-browser-')), 'report.html');
  const model = writeReport(runsDir, out);
  t.true(model.figures.length >= (screenshot ? 7 : 5), `figures: ${model.figures.map((f) => f.id).join(', ')}`);

  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const external: string[] = [];
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith('file:') || url.startsWith('data:') || url.startsWith('blob:')) return route.continue();
      external.push(url);
      return route.abort();
    });

    await page.goto(`file://${out}`);
    await page.waitForSelector(`body[data-figures-rendered="${model.figures.length}"]`, { timeout: 60_000 });

    for (const figure of model.figures) {
      const svgs = await page.locator(`#${figure.id} svg.main-svg`).count();
      t.true(svgs > 0, `figure ${figure.id} has an SVG`);
    }
    const warning = await page.locator('#not-pretrained').count();
    t.is(warning, 1);
    t.deepEqual(pageErrors, []);
    t.deepEqual(external, []);

    if (screenshot) {
      fs.mkdirSync(path.dirname(screenshot), { recursive: true });
      await page.screenshot({ path: screenshot, fullPage: true });
      t.true(fs.statSync(screenshot).size > 10_000);
    }
  } finally {
    await browser.close();
  }
}
