// Opens the rendered report in headless Chromium with the network cut off, waits for Plotly,
// checks that every figure drew its SVG, and saves a screenshot to reports/ci/report.png for CI.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { chromium, type Browser } from 'playwright-core';
import { writeReport } from '../../lib/report/render.ts';
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
