// Creates the trial executor named on the command line: `local` (this process) or `bullmq`
// (workers started with `clipfreeze worker`, on this machine or others, through Redis).
import { Option, type Command } from 'commander';
import { BullmqExecutor } from './bullmqExecutor.ts';
import { LocalExecutor } from './localExecutor.ts';
import { resolveRedisUrl, REDIS_URL_ENV } from './redis.ts';
import type { TrialExecutor } from './trial.ts';
import { DEFAULT_QUEUE_NAME } from './trialQueue.ts';

export const EXECUTOR_NAMES = ['local', 'bullmq'] as const;
export type ExecutorName = (typeof EXECUTOR_NAMES)[number];

export interface ExecutorOptions {
  /** The coordinator's runs folder: where run records end up. */
  runsDir: string;
  /** Redis URL for `bullmq`; CLIPFREEZE_REDIS_URL when absent. */
  redis?: string;
  queue?: string;
  /** Attempts per trial on `bullmq`, the first one included. */
  attempts?: number;
}

/** Returns a new executor; throws for an unknown name, naming the allowed ones. */
export function createExecutor(name: string, options: ExecutorOptions): TrialExecutor {
  if (name === 'local') return new LocalExecutor(options.runsDir);
  if (name === 'bullmq') {
    return new BullmqExecutor({
      redisUrl: resolveRedisUrl(options.redis),
      runsDir: options.runsDir,
      queueName: options.queue,
      attempts: options.attempts,
    });
  }
  throw new Error(`Invalid executor '${name}'. Allowed values: ${EXECUTOR_NAMES.join(', ')}.`);
}

/** Adds --executor, --redis, --queue and --attempts to a command that runs trials. */
export function addExecutorOptions(command: Command): Command {
  return command
    .addOption(new Option('--executor <name>', 'where trials run: local (this process) or bullmq (clipfreeze worker processes through Redis)').choices([...EXECUTOR_NAMES]).default('local'))
    .option('--redis <url>', `Redis URL for --executor bullmq: redis://[user:password@]host[:port][/db], rediss://... for TLS (default: env ${REDIS_URL_ENV})`)
    .option('--queue <name>', 'queue name for --executor bullmq; the workers must use the same', DEFAULT_QUEUE_NAME)
    .option('--attempts <n>', 'attempts per trial for --executor bullmq, with exponential backoff between them', (text: string) => {
      const value = Number(text);
      if (!Number.isInteger(value) || value < 1) throw new Error(`Invalid --attempts '${text}': expected a positive integer.`);
      return value;
    });
}
