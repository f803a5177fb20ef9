// `clipfreeze worker`: runs trials from a BullMQ queue in Redis on this machine. Start one per
// machine (or per GPU) that has the checkpoint and the data; the study enqueues the trials.
import { Option, type Command } from 'commander';
import { moduleLog } from '../util/log.ts';
import { checkpointSha256, dataFingerprint } from '../study/fingerprint.ts';
import { resolveRedisUrl } from '../study/redis.ts';
import { DEFAULT_LOCK_TIMING, DEFAULT_QUEUE_NAME } from '../study/trialQueue.ts';
import { startTrialWorker, type StopMode } from '../study/worker.ts';

const log = moduleLog('worker');

interface WorkerCliOptions {
  redis?: string;
  queue: string;
  concurrency: string;
  checkpoint: string;
  data: string;
  source?: string;
  runs: string;
  onStop: StopMode;
  lockDuration: string;
  stalledInterval: string;
  runner?: string;
}

export function register(program: Command): void {
  program
    .command('worker')
    .description('Run trials from a Redis queue on this machine until stopped (SIGTERM or Ctrl-C).')
    .option('--redis <url>', 'Redis URL: redis://[user:password@]host[:port][/db], rediss://... for TLS (default: env CLIPFREEZE_REDIS_URL)')
    .option('--queue <name>', 'queue name; the study must use the same', DEFAULT_QUEUE_NAME)
    .option('--concurrency <n>', 'trials run at once, one child process each', '1')
    .requiredOption('--checkpoint <path>', 'CLIP checkpoint (folder or .safetensors file); must have the SHA-256 the study recorded')
    .requiredOption('--data <dir>', 'target dataset folder; must have the fingerprint the study recorded')
    .option('--source <dir>', 'folder holding the source-domain image sets, each under the folder name the study uses')
    .option('--runs <dir>', 'where run folders are written on this machine (weight files stay here)', 'worker-runs')
    .addOption(
      new Option('--on-stop <mode>', 'on SIGTERM or Ctrl-C: release running trials back to the queue, or finish them first')
        .choices(['release', 'finish'])
        .default('release'),
    )
    .option('--lock-duration <seconds>', 'job lock time; a dead worker\'s trial is taken over after about this plus the stalled-check interval', String(DEFAULT_LOCK_TIMING.lockDurationMs / 1000))
    .option('--stalled-interval <seconds>', 'interval between checks for trials of dead workers', String(DEFAULT_LOCK_TIMING.stalledIntervalMs / 1000))
    .addOption(new Option('--runner <module>', 'module exporting runTrial(spec, {runsDir, onProgress}) (default: the built-in runner)').hideHelp())
    .action(async (opts: WorkerCliOptions, cmd: Command) => {
      const redisUrl = resolveRedisUrl(opts.redis);
      const concurrency = positiveNumber(opts.concurrency, '--concurrency', true);
      const lockDurationMs = positiveNumber(opts.lockDuration, '--lock-duration', false) * 1000;
      const stalledIntervalMs = positiveNumber(opts.stalledInterval, '--stalled-interval', false) * 1000;

      // Hashing a large checkpoint takes seconds; every trial is checked against these values.
      const identity = { checkpointSha256: checkpointSha256(opts.checkpoint), dataFingerprint: dataFingerprint(opts.data) };
      log.info(`Checkpoint ${opts.checkpoint}: SHA-256 ${identity.checkpointSha256}`);
      log.info(`Data ${opts.data}: fingerprint ${identity.dataFingerprint}`);

      const worker = await startTrialWorker({
        redisUrl,
        queueName: opts.queue,
        concurrency,
        checkpoint: opts.checkpoint,
        data: opts.data,
        source: opts.source,
        identity,
        runsDir: opts.runs,
        runnerModule: opts.runner,
        backend: cmd.optsWithGlobals().backend as string | undefined,
        lockTiming: { lockDurationMs, stalledIntervalMs },
      });

      // The first signal stops the worker in --on-stop mode; a second one releases running trials.
      let signals = 0;
      const stop = (signal: NodeJS.Signals) => {
        signals += 1;
        log.info(`Received ${signal}`);
        const mode: StopMode = signals > 1 ? 'release' : opts.onStop;
        worker.close(mode).then(
          () => process.exit(0),
          (err: Error) => {
            log.error(`Worker failed to stop cleanly: ${err.message}`);
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    });
}

function positiveNumber(text: string, option: string, integer: boolean): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new Error(`Invalid ${option} '${text}': expected a positive ${integer ? 'integer' : 'number'}.`);
  }
  return value;
}
