import test from 'ava';
import path from 'node:path';
import { BullmqExecutor } from '../../lib/study/bullmqExecutor.ts';
import { assertRecordedOnce, countEvents, makeSpec, setUp, startWorker, stopWorker, waitUntil } from './workerHarness.ts';

// Each test gets its own Redis, inputs and workers, because each one kills something.
test.serial('worker killed mid-trial is replaced', async (t) => {
  t.timeout(90_000);
  const setup = await setUp(t);
  const [a, b] = [startWorker(setup, 'a'), startWorker(setup, 'b')];
  await Promise.all([a.waitFor(/waiting for trials/), b.waitFor(/waiting for trials/)]);

  const specs = [1, 2, 3].map((seed) => makeSpec(setup.inputs, { seed, steps: 8, stepMs: 200 }));
  const runsDir = path.join(setup.inputs.root, 'coordinator-runs');
  const executor = new BullmqExecutor({ redisUrl: setup.redis.url, runsDir, pollIntervalMs: 200 });
  const study = executor.runAll(specs);

  // Kill worker a (SIGKILL, no clean-up) once it runs a trial and that trial has started.
  await a.waitFor(/Trial \S+ started/, 30_000);
  const killedTrial = /Trial (\S+) started/.exec(a.output())![1];
  await waitUntil(() => countEvents(setup.inputs, 'start').has(killedTrial), 20_000, `${killedTrial} to start`);
  a.child.kill('SIGKILL');

  const results = await study.finally(() => executor.close());
  t.is(results.length, specs.length);
  t.is(countEvents(setup.inputs, 'start').get(killedTrial), 2, 'the killed trial was not started again');
  assertRecordedOnce(t, setup, runsDir, specs.map((s) => s.id));
  t.regex(b.output(), new RegExp(`Trial ${killedTrial} finished`));
});

test.serial('worker SIGTERM releases running trial', async (t) => {
  t.timeout(60_000);
  const setup = await setUp(t);
  // A long lock: the trial can only move on quickly if the worker releases it.
  const a = startWorker(setup, 'a', ['--lock-duration', '60', '--stalled-interval', '30']);
  await a.waitFor(/waiting for trials/);

  const spec = makeSpec(setup.inputs, { seed: 7, steps: 25, stepMs: 200 });
  const runsDir = path.join(setup.inputs.root, 'coordinator-runs');
  const executor = new BullmqExecutor({ redisUrl: setup.redis.url, runsDir, pollIntervalMs: 200 });
  const study = executor.runAll([spec]);

  await waitUntil(() => countEvents(setup.inputs, 'start').has(spec.id), 30_000, 'the trial to start');
  const code = await stopWorker(a, 'SIGTERM');
  t.is(code, 0, a.output());
  t.regex(a.output(), new RegExp(`Trial ${spec.id} released back to the queue`));
  t.is(countEvents(setup.inputs, 'abort').get(spec.id), 1, 'the runner did not see the abort signal');

  const b = startWorker(setup, 'b', ['--lock-duration', '60', '--stalled-interval', '30']);
  const started = Date.now();
  await b.waitFor(new RegExp(`Trial ${spec.id} started`), 20_000);
  t.true(Date.now() - started < 20_000);

  await study.finally(() => executor.close());
  t.is(countEvents(setup.inputs, 'start').get(spec.id), 2);
  assertRecordedOnce(t, setup, runsDir, [spec.id]);
});

test.serial('worker SIGTERM with finish mode', async (t) => {
  t.timeout(60_000);
  const setup = await setUp(t);
  const a = startWorker(setup, 'a', ['--on-stop', 'finish']);
  await a.waitFor(/waiting for trials/);

  const spec = makeSpec(setup.inputs, { seed: 8, steps: 10, stepMs: 200 });
  const runsDir = path.join(setup.inputs.root, 'coordinator-runs');
  const executor = new BullmqExecutor({ redisUrl: setup.redis.url, runsDir, pollIntervalMs: 200 });
  const study = executor.runAll([spec]);

  await waitUntil(() => countEvents(setup.inputs, 'start').has(spec.id), 30_000, 'the trial to start');
  const code = await stopWorker(a, 'SIGTERM', 30_000);
  await study.finally(() => executor.close());

  t.is(code, 0, a.output());
  t.is(countEvents(setup.inputs, 'start').get(spec.id), 1);
  assertRecordedOnce(t, setup, runsDir, [spec.id]);
});

test.serial('worker stops trial after lock lost', async (t) => {
  t.timeout(90_000);
  const setup = await setUp(t);
  const a = startWorker(setup, 'a');
  await a.waitFor(/waiting for trials/);

  const spec = makeSpec(setup.inputs, { seed: 9, steps: 60, stepMs: 200 });
  const runsDir = path.join(setup.inputs.root, 'coordinator-runs');
  const executor = new BullmqExecutor({ redisUrl: setup.redis.url, runsDir, pollIntervalMs: 200 });
  const study = executor.runAll([spec]);

  // Redis stays down longer than the 4 s lock, so the lock has expired when it is back: the
  // worker must stop its run and the trial must start again.
  await waitUntil(() => countEvents(setup.inputs, 'start').has(spec.id), 30_000, 'the trial to start');
  await setup.redis.restart(6000);

  await study.finally(() => executor.close());
  t.regex(a.output(), new RegExp(`Lost the job lock of trial ${spec.id}`));
  t.is(countEvents(setup.inputs, 'abort').get(spec.id), 1, 'the first run was not stopped');
  t.is(countEvents(setup.inputs, 'start').get(spec.id), 2);
  assertRecordedOnce(t, setup, runsDir, [spec.id]);
});
