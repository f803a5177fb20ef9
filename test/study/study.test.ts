import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { parseStudyConfig } from '../../lib/study/config.ts';
import { hasShared, PROJECT_ROOT, sharedPath } from '../helpers/shared.ts';

const sharedTest = hasShared('fixtures', 'clip-mini') && hasShared('data', 'chestxray14-sample') && hasShared('data', 'natural') ? test.serial : test.skip;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-study-'));
const runsDir = path.join(tmp, 'runs');
const reportFile = path.join(tmp, 'report.html');
const configFile = path.join(tmp, 'study.json');
const env = { ...process.env, CLIPFREEZE_CACHE_DIR: path.join(tmp, 'cache') };

// Every method on a tiny budget: one seed, a few images per split, one short epoch.
const studyConfig = {
  name: 'tiny',
  checkpoint: sharedPath('fixtures', 'clip-mini', 'hf-format'),
  dataset: 'chestxray14',
  data: sharedPath('data', 'chestxray14-sample'),
  source: [{ name: 'cifar10-test', path: sharedPath('data', 'natural', 'cifar10-test'), limitPerClass: 2 }],
  seeds: [0],
  limit: { train: 24, val: 24, test: 24 },
  train: { epochs: 1, batchSize: 8, microBatchSize: 8, lr: 1e-4, warmupSteps: 1, patience: 0 },
  methods: [
    { name: 'zero-shot', kind: 'zero-shot' },
    { name: 'full', kind: 'train', plan: 'all' },
    { name: 'truncate-1', kind: 'train', plan: 'all', truncate: 1 },
    { name: 'top-block', kind: 'train', plan: 'vision.block.2,vision.head,head' },
    { name: 'similarity-mmd', kind: 'select', strategy: 'similarity', settings: { method: 'mmd', units: 2 } },
    { name: 'gradient-rgn', kind: 'select', strategy: 'gradient', settings: { method: 'rgn', units: 2 } },
    { name: 'search', kind: 'select', strategy: 'search', settings: { budget: { unit: 'epochs', total: 2, minBudget: 0.5, maxBudget: 1, eta: 2 } } },
  ],
  bootstrap: 20,
  runs: runsDir,
  report: reportFile,
  pretrained: false,
};

function runStudyCli(): { child: ReturnType<typeof spawn>; done: Promise<{ code: number | null; stderr: string }> } {
  const child = spawn(process.execPath, [path.join(PROJECT_ROOT, 'bin', 'clipfreeze.js'), 'study', '--config', configFile], {
    cwd: tmp,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const done = new Promise<{ code: number | null; stderr: string }>((resolve) => child.on('close', (code) => resolve({ code, stderr })));
  return { child, done };
}

function completeRuns(): Map<string, string> {
  const out = new Map<string, string>();
  if (!fs.existsSync(runsDir)) return out;
  for (const name of fs.readdirSync(runsDir)) {
    const marker = path.join(runsDir, name, 'complete.json');
    if (fs.existsSync(marker)) out.set(name, JSON.parse(fs.readFileSync(marker, 'utf8')).finishedAt);
  }
  return out;
}

test('study config rejects unknown method kind', (t) => {
  const error = t.throws(() => parseStudyConfig({ ...studyConfig, methods: [{ name: 'x', kind: 'finetune' }] }));
  t.regex(error!.message, /methods\.0\.kind.*zero-shot, train, select/);
});

test('study config rejects train without plan', (t) => {
  const error = t.throws(() => parseStudyConfig({ ...studyConfig, methods: [{ name: 'x', kind: 'train' }] }));
  t.regex(error!.message, /method 'x' of kind 'train' needs a 'plan'/);
});

test('study config rejects unknown key', (t) => {
  const error = t.throws(() => parseStudyConfig({ ...studyConfig, epochs: 3 }));
  t.regex(error!.message, /unknown key 'epochs'/);
});

sharedTest('study killed midway resumes without redoing runs', async (t) => {
  fs.writeFileSync(configFile, JSON.stringify(studyConfig, null, 2));

  // 1. Start the study and kill it once a few runs are complete.
  const first = runStudyCli();
  const deadline = Date.now() + 8 * 60_000;
  while (completeRuns().size < 3 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  first.child.kill('SIGKILL');
  const killed = await first.done;
  t.is(killed.code, null, `the study ended before it was killed:\n${killed.stderr.slice(-2000)}`);
  const beforeResume = completeRuns();
  t.true(beforeResume.size >= 3, `only ${beforeResume.size} runs completed before the deadline`);
  t.false(fs.existsSync(reportFile));

  // 2. Run it again: it completes and leaves every finished run as it was.
  const second = runStudyCli();
  const resumed = await second.done;
  t.is(resumed.code, 0, resumed.stderr.slice(-3000));
  const afterResume = completeRuns();
  for (const [runId, finishedAt] of beforeResume) {
    t.is(afterResume.get(runId), finishedAt, `run ${runId} was redone`);
  }

  // 3. Every method has a complete evaluated run, and the report names each one.
  const studyDir = [...afterResume.keys()].find((name) => name.startsWith('study-'));
  t.truthy(studyDir, 'no complete study record');
  const study = JSON.parse(fs.readFileSync(path.join(runsDir, studyDir!, 'study.json'), 'utf8'));
  t.deepEqual(study.runs.map((r: { method: string }) => r.method), studyConfig.methods.map((m) => m.name));
  for (const entry of study.runs) {
    t.true(afterResume.has(entry.runId), `run ${entry.runId} of ${entry.method} is not complete`);
    const files = fs.readdirSync(path.join(runsDir, entry.runId));
    t.true(files.includes('metrics.json'), `${entry.method} has no metrics.json`);
    t.true(files.includes('forgetting.json'), `${entry.method} has no forgetting.json`);
  }
  const html = fs.readFileSync(reportFile, 'utf8');
  for (const method of studyConfig.methods) t.true(html.includes(method.name), `report does not name ${method.name}`);
  t.regex(html, /Not a pretrained checkpoint/);
});
