import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { listCompleteRuns, RunRecord, runIdFor } from '../../lib/runs/record.ts';
import { checkDefaultInputs } from '../../lib/study/defaultConfig.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-record-'));

test('record is complete only after marker', (t) => {
  const record = new RunRecord(path.join(tmp, 'runs'), 'train-a');
  record.writeJson('config.json', { kind: 'train' });
  t.false(record.isComplete());
  t.deepEqual(listCompleteRuns(path.join(tmp, 'runs')), []);
  record.markComplete('train', ['config.json']);
  t.true(record.isComplete());
  t.is(listCompleteRuns(path.join(tmp, 'runs'))[0].marker.runId, 'train-a');
});

test('markComplete rejects missing files', (t) => {
  const record = new RunRecord(path.join(tmp, 'runs'), 'train-b');
  record.writeJson('config.json', {});
  const error = t.throws(() => record.markComplete('train', ['config.json', 'metrics.json']));
  t.regex(error!.message, /missing metrics\.json/);
  t.false(record.isComplete());
});

test('run id depends on config only', (t) => {
  t.is(runIdFor('train', { a: 1, b: 2 }, 'full'), runIdFor('train', { b: 2, a: 1 }, 'full'));
  t.not(runIdFor('train', { a: 1 }), runIdFor('train', { a: 2 }));
});

test('runs path that is a file fails clearly', (t) => {
  const file = path.join(tmp, 'not-a-folder');
  fs.writeFileSync(file, 'x');
  const error = t.throws(() => new RunRecord(file, 'zero-shot-x'));
  t.regex(error!.message, /Cannot create the run folder .* is a writable folder \(not a file\), or choose another with --runs/);
});

test('deleted run folder gives clear log error', (t) => {
  const record = new RunRecord(path.join(tmp, 'runs'), 'train-c');
  fs.rmSync(record.dir, { recursive: true });
  const error = t.throws(() => record.appendLog('epoch 1'));
  t.regex(error!.message, /Cannot write .*run\.log.*Was the run folder deleted/);
});

test('default inputs error names download and variable', (t) => {
  const missing = { checkpoint: path.join(tmp, 'ckpt'), data: path.join(tmp, 'cxr'), source: path.join(tmp, 'nat') };
  const unset = t.throws(() => checkDefaultInputs(missing, {}));
  t.regex(unset!.message, /openai\/clip-vit-base-patch32/);
  t.regex(unset!.message, /or set CLIPFREEZE_CHECKPOINT to a checkpoint folder or file/);
  t.regex(unset!.message, /Data_Entry_2017_v2020\.csv/);
  const set = t.throws(() => checkDefaultInputs(missing, { CLIPFREEZE_DATA: '/nowhere' }));
  t.regex(set!.message, /or point CLIPFREEZE_DATA \(now \/nowhere\) at an existing dataset folder/);
});
