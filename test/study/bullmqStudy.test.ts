import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hasShared, PROJECT_ROOT, sharedPath } from '../helpers/shared.ts';
import { startRedis } from './redisServer.ts';
import { stopWorker, type WorkerProcess } from './workerHarness.ts';

const sharedTest = hasShared('fixtures', 'clip-mini') && hasShared('data', 'chestxray14-sample') && hasShared('data', 'natural') ? test.serial : test.skip;

// Two very short real trials: zero-shot and one training run of the mini fixture on a handful of
// ChestX-ray14 images, each with a test split and forgetting on a few CIFAR-10 images.
function studyConfig(runsDir: string, reportFile: string) {
  return {
    name: 'distributed',
    checkpoint: sharedPath('fixtures', 'clip-mini', 'hf-format'),
    dataset: 'chestxray14',
    data: sharedPath('data', 'chestxray14-sample'),
    source: [{ name: 'cifar10-test', path: sharedPath('data', 'natural', 'cifar10-test'), limitPerClass: 1 }],
    seeds: [0],
    limit: { train: 16, val: 16, test: 16 },
    train: { epochs: 1, batchSize: 8, microBatchSize: 8, lr: 1e-4, warmupSteps: 1, patience: 0 },
    methods: [
      { name: 'zero-shot', kind: 'zero-shot' },
      { name: 'full', kind: 'train', plan: 'all' },
    ],
    bootstrap: 10,
    runs: runsDir,
    report: reportFile,
    pretrained: false,
  };
}

interface Finished {
  code: number | null;
  output: string;
}

function runCli(args: string[], cwd: string, env: NodeJS.ProcessEnv): { child: ReturnType<typeof spawn>; done: Promise<Finished> } {
  const child = spawn(process.execPath, [path.join(PROJECT_ROOT, 'bin', 'clipfreeze.js'), ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const done = new Promise<Finished>((resolve) => child.on('close', (code) => resolve({ code, output })));
  return { child, done };
}

/**
 * Compares two predictions.csv files: the same rows and labels, and scores within 1e-5. Training
 * on the wasm backend is not bit-reproducible between two processes here (scores differed by
 * about 1e-7), so scores cannot be compared exactly.
 */
function comparePredictions(t: ExecutionContext, method: string, localDir: string, remoteDir: string): void {
  const read = (dir: string) => fs.readFileSync(path.join(dir, 'predictions.csv'), 'utf8').trim().split('\n').map((line) => line.split(','));
  const [mine, theirs] = [read(localDir), read(remoteDir)];
  t.deepEqual(theirs[0], mine[0], `${method}: predictions.csv header`);
  t.is(theirs.length, mine.length, `${method}: predictions.csv rows`);
  const scoreColumns = mine[0].map((name, i) => (name.startsWith('score:') ? i : -1)).filter((i) => i >= 0);
  let maxDifference = 0;
  for (let row = 1; row < mine.length; row++) {
    t.deepEqual(theirs[row].slice(0, scoreColumns[0]), mine[row].slice(0, scoreColumns[0]), `${method}: row ${row} image and labels`);
    for (const column of scoreColumns) maxDifference = Math.max(maxDifference, Math.abs(Number(theirs[row][column]) - Number(mine[row][column])));
  }
  t.true(maxDifference <= 1e-5, `${method}: scores differ by up to ${maxDifference}`);
}

function studyRuns(runsDir: string): Array<{ method: string; runId: string }> {
  const studyDir = fs.readdirSync(runsDir).find((name) => name.startsWith('study-'));
  if (!studyDir) throw new Error(`no study record in ${runsDir}`);
  return JSON.parse(fs.readFileSync(path.join(runsDir, studyDir, 'study.json'), 'utf8')).runs;
}

sharedTest('bullmq study on two workers equals local study', async (t) => {
  t.timeout(9 * 60_000);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-bullmq-study-'));
  const env = { ...process.env, CLIPFREEZE_CACHE_DIR: path.join(tmp, 'cache'), CLIPFREEZE_LOG_LEVEL: 'info' };
  const redis = await startRedis();
  const workers: WorkerProcess[] = [];
  t.teardown(async () => {
    await Promise.all(workers.map((w) => stopWorker(w, 'SIGKILL')));
    await redis.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const local = { runs: path.join(tmp, 'local-runs'), config: path.join(tmp, 'local.json') };
  const remote = { runs: path.join(tmp, 'remote-runs'), config: path.join(tmp, 'remote.json') };
  fs.writeFileSync(local.config, JSON.stringify(studyConfig(local.runs, path.join(tmp, 'local.html'))));
  fs.writeFileSync(remote.config, JSON.stringify(studyConfig(remote.runs, path.join(tmp, 'remote.html'))));

  // Two workers with the study's checkpoint and data, and the coordinator with --executor bullmq.
  for (const name of ['a', 'b']) {
    const args = ['worker', '--redis', redis.url, '--checkpoint', sharedPath('fixtures', 'clip-mini', 'hf-format'), '--data', sharedPath('data', 'chestxray14-sample'), '--runs', path.join(tmp, `worker-${name}`)];
    const { child, done } = runCli(args, tmp, env);
    let output = '';
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    workers.push({ child, runsDir: path.join(tmp, `worker-${name}`), output: () => output, exited: done.then((f) => f.code), waitFor: async () => {} });
  }
  const distributed = runCli(['study', '--config', remote.config, '--executor', 'bullmq', '--redis', redis.url], tmp, env);
  const [remoteDone, localDone] = await Promise.all([distributed.done, runCli(['study', '--config', local.config], tmp, env).done]);
  t.is(remoteDone.code, 0, remoteDone.output.slice(-3000));
  t.is(localDone.code, 0, localDone.output.slice(-3000));

  // The same runs, with the same numbers, whichever way they ran.
  const localRuns = studyRuns(local.runs);
  const remoteRuns = studyRuns(remote.runs);
  t.deepEqual(remoteRuns.map((r) => r.runId), localRuns.map((r) => r.runId));
  for (const { method, runId } of localRuns) {
    t.true(fs.existsSync(path.join(remote.runs, runId, 'complete.json')), `${method} has no complete.json`);
    comparePredictions(t, method, path.join(local.runs, runId), path.join(remote.runs, runId));
    const mine = JSON.parse(fs.readFileSync(path.join(local.runs, runId, 'metrics.json'), 'utf8'));
    const theirs = JSON.parse(fs.readFileSync(path.join(remote.runs, runId, 'metrics.json'), 'utf8'));
    t.is(theirs.n, mine.n, `${method}: test images`);
    for (const finding of mine.findings as string[]) {
      const [a, b] = [theirs.perFinding[finding].auroc, mine.perFinding[finding].auroc];
      t.true(a === b || Math.abs(a - b) <= 1e-3, `${method}: AUROC of ${finding} is ${a} distributed, ${b} local`);
    }
    // Forgetting is top-1 accuracy on n source images: 'before' comes from the pretrained model
    // alone, and 'after' may move by one image where a score sits at a tie.
    const forgetting = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, runId, 'forgetting.json'), 'utf8')).sets;
    const [mySets, theirSets] = [forgetting(local.runs), forgetting(remote.runs)];
    t.deepEqual(Object.keys(theirSets), Object.keys(mySets), `${method}: forgetting sets`);
    for (const [name, set] of Object.entries<{ before: number; after: number; n: number }>(mySets)) {
      t.is(theirSets[name].before, set.before, `${method}: accuracy on ${name} before training`);
      t.true(Math.abs(theirSets[name].after - set.after) <= 1 / set.n, `${method}: accuracy on ${name} after training`);
    }
  }
  const ranOn = workers.filter((w) => fs.existsSync(w.runsDir) && fs.readdirSync(w.runsDir).some((name) => !name.startsWith('.')));
  t.is(ranOn.length, 2, 'not every worker ran a trial');
});
