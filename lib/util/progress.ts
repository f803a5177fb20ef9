// Progress bars for long work. On a terminal they redraw in place on stderr. Elsewhere
// (CI, notebooks, redirected output) they log a line at most every 10 seconds and at the end.
import cliProgress from 'cli-progress';
import { log } from './log.ts';

export interface Progress {
  /** Advances by `n` items and updates the named values shown after the bar. */
  tick(n?: number, values?: Record<string, string | number>): void;
  stop(): void;
}

export function createProgress(label: string, total: number): Progress {
  if (process.stderr.isTTY && process.env.CI !== 'true') {
    const bar = new cliProgress.SingleBar(
      {
        format: `${label} [{bar}] {value}/{total} {percentage}% eta {eta_formatted} {info}`,
        stream: process.stderr,
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, { info: '' });
    return {
      tick(n = 1, values) {
        bar.increment(n, { info: formatValues(values) });
      },
      stop() {
        bar.stop();
      },
    };
  }

  let done = 0;
  let lastLog = Date.now();
  const started = Date.now();
  return {
    tick(n = 1, values) {
      done += n;
      if (Date.now() - lastLog > 10_000 || done === total) {
        lastLog = Date.now();
        const seconds = ((Date.now() - started) / 1000).toFixed(0);
        log.info(`${label}: ${done}/${total} (${seconds} s) ${formatValues(values)}`);
      }
    },
    stop() {},
  };
}

function formatValues(values?: Record<string, string | number>): string {
  if (!values) return '';
  return Object.entries(values)
    .map(([k, v]) => `${k}=${typeof v === 'number' ? formatNumber(v) : v}`)
    .join(' ');
}

function formatNumber(v: number): string {
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4);
}
