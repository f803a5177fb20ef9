import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parsePredictions, readPredictions, writePredictions, type Predictions } from '../../lib/eval/predictions.ts';

const sample: Predictions = {
  findings: ['Atelectasis', 'Pleural_Thickening'],
  rows: [
    { image: '00000001_000.png', patient: '1', split: 'test', labels: [1, 0], scores: [0.1 + 0.2, 1e-17] },
    { image: 'name, with "quotes".png', patient: '2', split: 'test', labels: [0, 1], scores: [-3.5, 0.7654321098765432] },
    { image: '00000003_001.png', patient: '3', split: 'val', labels: [0, 0], scores: [Math.fround(0.3), 12345678.9] },
  ],
};

const header = 'image,patient,split,label:A,score:A';

test('predictions round-trip exactly', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-pred-'));
  const file = path.join(dir, 'predictions.csv');
  writePredictions(file, sample);
  t.deepEqual(readPredictions(file), sample);
  fs.rmSync(dir, { recursive: true });
});

test('predictions header lists columns', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-pred-'));
  const file = path.join(dir, 'predictions.csv');
  writePredictions(file, sample);
  const firstLine = fs.readFileSync(file, 'utf8').split('\n')[0];
  t.is(firstLine, 'image,patient,split,label:Atelectasis,label:Pleural_Thickening,score:Atelectasis,score:Pleural_Thickening');
  fs.rmSync(dir, { recursive: true });
});

test('predictions reject bad label', (t) => {
  const text = `${header}\na.png,1,test,1,0.5\nb.png,2,test,2,0.5\n`;
  t.throws(() => parsePredictions(text, 'p.csv'), { message: /Invalid label '2' at p.csv line 3, column 'label:A'/ });
});

test('predictions reject bad score', (t) => {
  const text = `${header}\na.png,1,test,1,abc\n`;
  t.throws(() => parsePredictions(text, 'p.csv'), { message: /Invalid score 'abc' at p.csv line 2, column 'score:A'/ });
});

test('predictions reject empty score', (t) => {
  const text = `${header}\na.png,1,test,1,\n`;
  t.throws(() => parsePredictions(text, 'p.csv'), { message: /Invalid score '' at p.csv line 2, column 'score:A'/ });
});

test('predictions reject bad split', (t) => {
  const text = `${header}\na.png,1,holdout,1,0.5\n`;
  t.throws(() => parsePredictions(text, 'p.csv'), { message: /Invalid split 'holdout' at p.csv line 2, column 'split'/ });
});

test('predictions reject short row', (t) => {
  const text = `${header}\na.png,1,test,1\n`;
  t.throws(() => parsePredictions(text, 'p.csv'), { message: /p.csv line 2 has 4 fields; the header has 5/ });
});

test('predictions reject unpaired label', (t) => {
  t.throws(() => parsePredictions('image,patient,split,label:A,score:B\n', 'p.csv'), { message: /'label:A' but no 'score:A'/ });
});

test('predictions reject missing column', (t) => {
  t.throws(() => parsePredictions('image,split,label:A,score:A\n', 'p.csv'), { message: /no 'patient' column/ });
});

test('predictions reject duplicate image', (t) => {
  const text = `${header}\na.png,1,test,1,0.5\na.png,1,test,0,0.2\n`;
  t.throws(() => parsePredictions(text, 'p.csv'), { message: /Duplicate image 'a.png' at p.csv line 3.*line 2/ });
});
