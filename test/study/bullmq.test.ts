import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { Queue } from 'bullmq';
import { BullmqExecutor } from '../../lib/study/bullmqExecutor.ts';
import { parseRedisUrl } from '../../lib/study/redis.ts';
import type { TrialProgress } from '../../lib/study/trial.ts';
import { startRedis, type RedisServer } from './redisServer.ts';
import { runTrial as runFakeTrial } from './workerFakeRunner.ts';
import { countEvents, makeInputs, makeSpec, spawnWorker, stopWorker, type TrialInputs, type WorkerProcess } from './workerHarness.ts';

// One Redis and two workers (separate processes, separate run folders) serve every test here.
// The tests run one after another because they share the queue.
let redis: RedisServer;
let inputs: TrialInputs;
let workers: WorkerProcess[] = [];

test.before(async () => {
  redis = await startRedis();
  inputs = makeInputs();
  workers = [spawnWorker(redis.url, inputs, 'a'), spawnWorker(redis.url, inputs, 'b')];
  await Promise.all(workers.map((w) => w.waitFor(/waiting for trials/)));
});

test.after.always(async () => {
  await Promise.all(workers.map((w) => stopWorker(w)));
  await redis?.stop();
  if (inputs) fs.rmSync(inputs.root, { recursive: true, force: true });
});

const DETERMINISTIC_FILES = ['config.json', 'metrics.json', 'predictions.csv', 'history.json', 'cost.json'];

test.serial('bullmq study on two workers equals local run', async (t) => {
  t.timeout(60_000);
  const specs = [1, 2, 3, 4].map((seed) => makeSpec(inputs, { seed, steps: 4, stepMs: 150 }));
  const coordinatorRuns = path.join(inputs.root, 'coordinator-runs');
  const localRuns = path.join(inputs.root, 'local-runs');

  const progress: TrialProgress[] = [];
  const executor = new BullmqExecutor({ redisUrl: redis.url, runsDir: coordinatorRuns, pollIntervalMs: 200 });
  const results = await executor.runAll(specs, (p) => progress.push(p)).finally(() => executor.close());

  const local = [];
  for (const spec of specs) local.push(await runFakeTrial(spec, { runsDir: localRuns }));

  t.deepEqual(results, local);
  for (const spec of specs) {
    t.true(fs.existsSync(path.join(coordinatorRuns, spec.id, 'complete.json')), `${spec.id} has no complete.json`);
    for (const file of DETERMINISTIC_FILES) {
      const remote = fs.readFileSync(path.join(coordinatorRuns, spec.id, file), 'utf8');
      const mine = fs.readFileSync(path.join(localRuns, spec.id, file), 'utf8');
      t.is(remote, mine, `${spec.id}/${file} differs from the local run`);
    }
  }
  t.true(
    progress.some((p) => p.fraction > 0 && p.fraction < 1 && /step \d\/4/.test(p.message)),
    'no intermediate progress event',
  );
  for (const spec of specs) {
    t.is(progress.filter((p) => p.id === spec.id && p.fraction >= 1).length, 1, `${spec.id} not reported complete exactly once`);
  }
  for (const worker of workers) {
    t.true(fs.readdirSync(worker.runsDir).length > 0, `worker ${worker.runsDir} ran no trial`);
  }
});

test.serial('bullmq keeps weight files on worker', async (t) => {
  const spec = makeSpec(inputs, { seed: 11, steps: 1, stepMs: 10 });
  const runsDir = path.join(inputs.root, 'weights-runs');
  const executor = new BullmqExecutor({ redisUrl: redis.url, runsDir, pollIntervalMs: 200 });
  await executor.runAll([spec]).finally(() => executor.close());

  const marker = JSON.parse(fs.readFileSync(path.join(runsDir, spec.id, 'complete.json'), 'utf8'));
  t.false(fs.existsSync(path.join(runsDir, spec.id, 'checkpoint', 'model.safetensors')));
  t.false(marker.files.includes('checkpoint/model.safetensors'));
  t.deepEqual(marker.leftOnWorker.files, [{ path: 'checkpoint/model.safetensors', bytes: 4096 }]);
  t.true(fs.existsSync(path.join(marker.leftOnWorker.runDir, 'checkpoint', 'model.safetensors')));
});

test.serial('bullmq enqueue twice runs once', async (t) => {
  t.timeout(30_000);
  const specs = [21, 22].map((seed) => makeSpec(inputs, { seed, steps: 2, stepMs: 100 }));
  const first = new BullmqExecutor({ redisUrl: redis.url, runsDir: path.join(inputs.root, 'twice-1'), pollIntervalMs: 200 });
  const second = new BullmqExecutor({ redisUrl: redis.url, runsDir: path.join(inputs.root, 'twice-2'), pollIntervalMs: 200 });

  // Two coordinators enqueue the same trials at once; then the first enqueues them again.
  const [a, b] = await Promise.all([first.runAll(specs), second.runAll(specs)]);
  const again = await first.runAll([...specs, specs[0]]);
  await Promise.all([first.close(), second.close()]);

  t.deepEqual(a, b);
  t.deepEqual(again, [...a, a[0]]);
  const starts = countEvents(inputs, 'start');
  for (const spec of specs) t.is(starts.get(spec.id), 1, `${spec.id} started more than once`);
});

test.serial('bullmq retries failed trial', async (t) => {
  t.timeout(30_000);
  const spec = makeSpec(inputs, { seed: 31, steps: 1, stepMs: 10, failAttempts: 1 });
  const executor = new BullmqExecutor({ redisUrl: redis.url, runsDir: path.join(inputs.root, 'retry-runs'), pollIntervalMs: 200, backoffMs: 300 });
  const [result] = await executor.runAll([spec]).finally(() => executor.close());

  t.is(result.id, spec.id);
  t.is(countEvents(inputs, 'start').get(spec.id), 2);
  t.is(countEvents(inputs, 'finish').get(spec.id), 1);
});

test.serial('bullmq reports trial failing every attempt', async (t) => {
  t.timeout(30_000);
  const good = makeSpec(inputs, { seed: 41, steps: 1, stepMs: 10 });
  const bad = makeSpec(inputs, { seed: 42, steps: 1, stepMs: 10, failAttempts: 5 });
  const runsDir = path.join(inputs.root, 'fail-runs');
  const executor = new BullmqExecutor({ redisUrl: redis.url, runsDir, pollIntervalMs: 200, backoffMs: 100, attempts: 2 });
  const error = await t.throwsAsync(executor.runAll([good, bad]).finally(() => executor.close()));

  t.regex(error!.message, new RegExp(`${bad.id}: failed after 2 attempts: planned failure`));
  t.true(fs.existsSync(path.join(runsDir, good.id, 'complete.json')), 'the finished trial was not recorded');
  t.is(countEvents(inputs, 'start').get(bad.id), 2);
});

test.serial('bullmq rejects checkpoint hash mismatch', async (t) => {
  t.timeout(30_000);
  const wrongHash = 'f'.repeat(64);
  const spec = { ...makeSpec(inputs, { seed: 51, steps: 1, stepMs: 10 }), checkpointSha256: wrongHash };
  const executor = new BullmqExecutor({ redisUrl: redis.url, runsDir: path.join(inputs.root, 'mismatch-runs'), pollIntervalMs: 200, backoffMs: 100 });
  const error = await t.throwsAsync(executor.runAll([spec]).finally(() => executor.close()));

  t.regex(error!.message, /failed after 1 attempt: Trial \S+ rejected by worker/);
  t.true(error!.message.includes(`checkpoint SHA-256 ${wrongHash}`), error!.message);
  t.true(error!.message.includes(inputs.checkpointSha256), error!.message);
  t.false(error!.message.includes('data fingerprint'), 'the matching data was reported as different');
  t.is(countEvents(inputs, 'start').get(spec.id), undefined);

  const queue = new Queue('clipfreeze-trials', { connection: parseRedisUrl(redis.url) });
  const job = await queue.getJob(spec.id);
  await queue.close();
  t.is(job?.attemptsMade, 1);
});

test.serial('bullmq sends planFrom selection along', async (t) => {
  t.timeout(30_000);
  const selection = JSON.stringify({ strategy: 'gradient', plan: { train: ['vision.block.2'], truncate: 0 } });
  const runsDir = path.join(inputs.root, 'plan-runs');

  // A select run the workers cannot see: the job is added by hand as the executor would add it.
  const remote = makeSpec(inputs, { seed: 71, steps: 1, stepMs: 10, planFrom: '/nonexistent/coordinator/select-run' });
  const queue = new Queue('clipfreeze-trials', { connection: parseRedisUrl(redis.url) });
  await queue.add(remote.kind, { spec: remote, planSelectionJson: selection }, { jobId: remote.id });
  await queue.close();

  // A select run on a file system the workers share.
  const sharedDir = path.join(inputs.root, 'shared-select-run');
  fs.mkdirSync(sharedDir);
  fs.writeFileSync(path.join(sharedDir, 'selection.json'), selection);
  const shared = makeSpec(inputs, { seed: 72, steps: 1, stepMs: 10, planFrom: sharedDir });

  const executor = new BullmqExecutor({ redisUrl: redis.url, runsDir, pollIntervalMs: 200 });
  await executor.runAll([remote, shared]).finally(() => executor.close());

  const remoteConfig = JSON.parse(fs.readFileSync(path.join(runsDir, remote.id, 'config.json'), 'utf8'));
  t.regex(remoteConfig.planFrom, /\.plans\/[0-9a-f]{16}$/);
  t.is(fs.readFileSync(path.join(remoteConfig.planFrom, 'selection.json'), 'utf8'), selection);
  const sharedConfig = JSON.parse(fs.readFileSync(path.join(runsDir, shared.id, 'config.json'), 'utf8'));
  t.is(sharedConfig.planFrom, sharedDir);
});

test.serial('bullmq reports missing planFrom selection', async (t) => {
  const spec = makeSpec(inputs, { seed: 73, steps: 1, stepMs: 10, planFrom: path.join(inputs.root, 'no-such-select-run') });
  const executor = new BullmqExecutor({ redisUrl: redis.url, runsDir: path.join(inputs.root, 'plan-runs'), pollIntervalMs: 200 });
  const error = await t.throwsAsync(executor.runAll([spec]).finally(() => executor.close()));
  t.regex(error!.message, /no-such-select-run does not exist\. Run the select step first/);
});

test.serial('bullmq fails invalid config without retry', async (t) => {
  t.timeout(30_000);
  const spec = makeSpec(inputs, { seed: 81, steps: 1, stepMs: 10, invalidConfig: true });
  const executor = new BullmqExecutor({ redisUrl: redis.url, runsDir: path.join(inputs.root, 'config-runs'), pollIntervalMs: 200, backoffMs: 100 });
  const error = await t.throwsAsync(executor.runAll([spec]).finally(() => executor.close()));

  t.regex(error!.message, /failed after 1 attempt: invalid config of/);
  t.is(countEvents(inputs, 'start').get(spec.id), 1);
});

test.serial('bullmq worker rejects foreign job', async (t) => {
  t.timeout(30_000);
  const queue = new Queue('clipfreeze-trials', { connection: parseRedisUrl(redis.url) });
  t.teardown(() => queue.close());
  await queue.add('other', { hello: 'world' }, { jobId: 'foreign-job', attempts: 3 });

  const deadline = Date.now() + 20_000;
  let state = await queue.getJobState('foreign-job');
  while (state !== 'failed' && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    state = await queue.getJobState('foreign-job');
  }
  const job = await queue.getJob('foreign-job');
  t.is(state, 'failed');
  t.is(job?.attemptsMade, 1);
  t.regex(job?.failedReason ?? '', /has no valid trial spec/);
});
