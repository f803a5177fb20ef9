// Console logging for the whole toolkit. Logs go to stderr so that commands which print
// JSON on stdout (embed, info, metrics) stay machine-readable.
import pino from 'pino';
import pretty from 'pino-pretty';

const level = process.env.CLIPFREEZE_LOG_LEVEL ?? 'info';

const stream = pretty({
  destination: 2,
  sync: true,
  colorize: process.stderr.isTTY === true,
  translateTime: 'HH:MM:ss',
  ignore: 'pid,hostname,module',
  messageFormat: '{if module}[{module}] {end}{msg}',
});

export const log = pino({ level }, stream);

/** Returns a logger whose lines carry `module` so a reader can tell which step wrote them. */
export function moduleLog(module: string): pino.Logger {
  return log.child({ module });
}
