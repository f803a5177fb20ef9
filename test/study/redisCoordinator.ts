// Runs one study through BullmqExecutor in its own process, so a test can read everything the
// coordinator logs. Input: env REDIS_URL, RUNS_DIR and SPECS (JSON array of TrialSpec).
// Output: the results as JSON on stdout; logs on stderr.
import { BullmqExecutor } from '../../lib/study/bullmqExecutor.ts';
import type { TrialSpec } from '../../lib/study/trial.ts';

const executor = new BullmqExecutor({ redisUrl: process.env.REDIS_URL!, runsDir: process.env.RUNS_DIR!, pollIntervalMs: 200, connectTimeoutMs: 5000 });
try {
  const results = await executor.runAll(JSON.parse(process.env.SPECS!) as TrialSpec[]);
  process.stdout.write(JSON.stringify(results) + '\n');
} catch (err) {
  process.stderr.write(`coordinator failed: ${(err as Error).message}\n`);
  process.exitCode = 1;
} finally {
  await executor.close();
}
