import test from 'ava';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { BullmqExecutor } from '../../lib/study/bullmqExecutor.ts';
import { maskRedisUrl, parseRedisUrl, resolveRedisUrl } from '../../lib/study/redis.ts';
import { PROJECT_ROOT } from '../helpers/shared.ts';
import { startRedis } from './redisServer.ts';
import { assertRecordedOnce, countEvents, makeInputs, makeSpec, setUp, spawnWorker, startWorker, stopWorker, waitUntil } from './workerHarness.ts';

const execFileAsync = promisify(execFile);

test('redis URL with password and database', (t) => {
  t.deepEqual(parseRedisUrl('redis://:s3cret@10.0.0.5:6380/2'), {
    host: '10.0.0.5',
    port: 6380,
    db: 2,
    password: 's3cret',
    maxRetriesPerRequest: null,
  });
});

test('redis URL with user and TLS', (t) => {
  const options = parseRedisUrl('rediss://alice:p%40ss%2Fword@redis.example.org');
  t.is(options.username, 'alice');
  t.is(options.password, 'p@ss/word');
  t.is(options.port, 6379);
  t.is(options.db, 0);
  t.deepEqual(options.tls, { servername: 'redis.example.org' });
});

test('redis URL TLS to IP address', (t) => {
  t.deepEqual(parseRedisUrl('rediss://10.1.2.3:6380').tls, {});
});

test('redis URL IPv6 host', (t) => {
  const options = parseRedisUrl('redis://[::1]:7000');
  t.is(options.host, '::1');
  t.is(options.port, 7000);
  t.is(options.tls, undefined);
});

test('redis URL invalid cases rejected', (t) => {
  const cases: Array<[string, RegExp]> = [
    ['http://:pw@host:6379', /scheme 'http' is not supported/],
    ['redis://:pw@host/abc', /database 'abc' is not a non-negative integer/],
    ['redis://:pw@host:6379?tls=true', /query parameters are not supported/],
    ['not a url :pw@', /Invalid Redis URL/],
  ];
  for (const [url, pattern] of cases) {
    const error = t.throws(() => parseRedisUrl(url), undefined, url);
    t.regex(error!.message, pattern, url);
    t.false(error!.message.includes('pw@'), `password shown for ${url}: ${error!.message}`);
  }
});

test('redis URL masking hides passwords', (t) => {
  t.is(maskRedisUrl('redis://:s3cret@host:6379/1'), 'redis://:***@host:6379/1');
  t.is(maskRedisUrl('rediss://alice:s3cret@host'), 'rediss://alice:***@host');
  t.is(maskRedisUrl('redis://alice@host'), 'redis://alice@host');
  t.is(maskRedisUrl('redis://host:6379'), 'redis://host:6379');
  t.is(maskRedisUrl('redis://:pa/ss@word@host'), 'redis://:***@host');
  t.is(maskRedisUrl('user:s3cret@host:6379'), '***@host:6379');
});

test('redis URL missing names the variable', (t) => {
  const saved = process.env.CLIPFREEZE_REDIS_URL;
  delete process.env.CLIPFREEZE_REDIS_URL;
  try {
    const error = t.throws(() => resolveRedisUrl(undefined));
    t.regex(error!.message, /--redis .* CLIPFREEZE_REDIS_URL/);
  } finally {
    if (saved !== undefined) process.env.CLIPFREEZE_REDIS_URL = saved;
  }
});

test('redis unreachable fails clearly', async (t) => {
  const runsDir = path.join(PROJECT_ROOT, 'runs-never-written');
  const spec = { id: 'train-unreachable', kind: 'train' as const, config: {}, checkpointSha256: 'a', dataFingerprint: 'b' };
  const executor = new BullmqExecutor({ redisUrl: 'redis://:topsecret@127.0.0.1:1', runsDir, connectTimeoutMs: 1500 });
  const error = await t.throwsAsync(executor.runAll([spec]));
  t.regex(error!.message, /Failed to connect to Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:1 within 1\.5 s/);
  t.false(error!.message.includes('topsecret'));
});

test.serial('redis password never logged', async (t) => {
  t.timeout(60_000);
  const password = 'hunter2-Very-Secret';
  const redis = await startRedis({ password });
  const inputs = makeInputs();
  const worker = spawnWorker(redis.url, inputs, 'secret');
  t.teardown(async () => {
    await stopWorker(worker, 'SIGKILL');
    await redis.stop();
  });
  await worker.waitFor(/waiting for trials/);

  const spec = makeSpec(inputs, { seed: 3, steps: 2, stepMs: 50 });
  const coordinator = await execFileAsync(process.execPath, ['--import', 'tsx', path.join(PROJECT_ROOT, 'test', 'study', 'redisCoordinator.ts')], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, REDIS_URL: redis.url, RUNS_DIR: path.join(inputs.root, 'coordinator-runs'), SPECS: JSON.stringify([spec]) },
    timeout: 40_000,
  }).catch((err: { stdout: string; stderr: string }) => err);
  t.is(JSON.parse(coordinator.stdout || '[{}]')[0].id, spec.id, `coordinator: ${coordinator.stderr}\nworker: ${worker.output()}`);

  // A worker with a wrong password exits with an error that names the masked URL.
  const wrongUrl = redis.url.replace(password, 'wrong-Password-42');
  const wrong = spawnWorker(wrongUrl, inputs, 'wrong');
  const code = await wrong.exited;
  t.not(code, 0);
  t.regex(wrong.output(), /WRONGPASS|invalid password|NOAUTH/i);

  const logs = [worker.output(), coordinator.stderr, wrong.output(), redis.output()].join('\n');
  t.true(worker.output().includes(`redis://:***@127.0.0.1:${redis.port}`), worker.output());
  t.false(logs.includes(password), 'the password appears in a log');
  t.false(logs.includes('wrong-Password-42'), 'the wrong password appears in a log');
});

test.serial('redis TLS URL runs trial', async (t) => {
  t.timeout(60_000);
  const password = 'tls-Secret-77';
  const redis = await startRedis({ password, tls: true });
  const inputs = makeInputs();
  const env = { NODE_EXTRA_CA_CERTS: redis.caFile! };
  const worker = spawnWorker(redis.url, inputs, 'tls', [], env);
  t.teardown(async () => {
    await stopWorker(worker, 'SIGKILL');
    await redis.stop();
  });
  await worker.waitFor(/waiting for trials/);

  const spec = makeSpec(inputs, { seed: 4, steps: 2, stepMs: 50 });
  const coordinator = await execFileAsync(process.execPath, ['--import', 'tsx', path.join(PROJECT_ROOT, 'test', 'study', 'redisCoordinator.ts')], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...env, REDIS_URL: redis.url, RUNS_DIR: path.join(inputs.root, 'coordinator-runs'), SPECS: JSON.stringify([spec]) },
    timeout: 40_000,
  }).catch((err: { stdout: string; stderr: string }) => err);
  t.is(JSON.parse(coordinator.stdout || '[{}]')[0].id, spec.id, `coordinator: ${coordinator.stderr}\nworker: ${worker.output()}`);
  t.true(worker.output().includes(`rediss://:***@127.0.0.1:${redis.port}`), worker.output());
  t.false([worker.output(), coordinator.stderr].join('\n').includes(password), 'the password appears in a log');
});

test.serial('redis restart mid-study completes', async (t) => {
  t.timeout(90_000);
  const setup = await setUp(t);
  // Locks outlast the restart, so no trial stalls and each one runs once.
  const lock = ['--lock-duration', '10', '--stalled-interval', '5'];
  const [a, b] = [startWorker(setup, 'a', lock), startWorker(setup, 'b', lock)];
  await Promise.all([a.waitFor(/waiting for trials/), b.waitFor(/waiting for trials/)]);

  const specs = [1, 2, 3, 4].map((seed) => makeSpec(setup.inputs, { seed, steps: 6, stepMs: 200 }));
  const runsDir = path.join(setup.inputs.root, 'coordinator-runs');
  const executor = new BullmqExecutor({ redisUrl: setup.redis.url, runsDir, pollIntervalMs: 200 });
  const study = executor.runAll(specs);

  // Restart Redis while trials run: after the first trial finished, with others still running.
  await waitUntil(() => countEvents(setup.inputs, 'finish').size >= 1, 40_000, 'a finished trial');
  await setup.redis.restart(1000);

  const results = await study.finally(() => executor.close());
  t.is(results.length, specs.length);
  assertRecordedOnce(t, setup, runsDir, specs.map((s) => s.id));
});

