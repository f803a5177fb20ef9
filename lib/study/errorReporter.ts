// Logs the errors that a queue connection emits without flooding the log: while Redis is down,
// ioredis reports the same connection error on every reconnect attempt.
import type pino from 'pino';

/** Repeats of one message are counted and summarised at most once per this many milliseconds. */
const REPEAT_SUMMARY_MS = 30_000;

/** Returns an error handler that logs each distinct message once, then a count of its repeats every 30 s. */
export function createErrorReporter(logger: pino.Logger, source: string): (err: Error) => void {
  const seen = new Map<string, { repeats: number; lastSummary: number }>();
  return (err: Error) => {
    const message = err?.message ?? String(err);
    const entry = seen.get(message);
    const now = Date.now();
    if (!entry) {
      seen.set(message, { repeats: 0, lastSummary: now });
      logger.warn(`${source}: ${message}`);
      return;
    }
    entry.repeats += 1;
    if (now - entry.lastSummary >= REPEAT_SUMMARY_MS) {
      logger.warn(`${source}: ${message} (repeated ${entry.repeats} times in ${Math.round((now - entry.lastSummary) / 1000)} s)`);
      entry.repeats = 0;
      entry.lastSummary = now;
    }
  };
}
