import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CHESTXRAY14_FINDINGS, parseLabelText, readLabelFile } from '../../lib/data/labels.ts';
import { hasShared } from '../helpers/shared.ts';
import { SAMPLE_DIR, sampleLabelLines, toForm2017 } from './chestxray14Fixture.ts';

const sharedTest = hasShared('data', 'chestxray14-sample') ? test : test.skip;

const HEADER_2020 = 'Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]';
const row = (image: string, findings: string, patient = '1') => `${image},${findings},0,${patient},57,M,PA,2682,2749,0.143,0.143`;

function sampleNames(): Set<string> {
  return new Set(fs.readdirSync(path.join(SAMPLE_DIR, 'images')));
}

test('labels map findings in order', (t) => {
  const table = parseLabelText([HEADER_2020, row('a.png', 'Cardiomegaly|Emphysema'), row('b.png', 'Hernia')].join('\n'), 'x.csv');
  const expected = new Array(14).fill(0);
  expected[1] = 1;
  expected[10] = 1;
  t.deepEqual(table.rows.get('a.png')!.labels, expected);
  t.is(table.rows.get('b.png')!.labels[13], 1);
  t.is(CHESTXRAY14_FINDINGS[13], 'Hernia');
  t.is(table.form, '2020');
});

test('labels no finding is all zero', (t) => {
  const table = parseLabelText([HEADER_2020, row('a.png', 'No Finding')].join('\n'), 'x.csv');
  t.deepEqual(table.rows.get('a.png')!.labels, new Array(14).fill(0));
});

test('labels skip unknown finding', (t) => {
  const text = [HEADER_2020, row('a.png', 'Effusion'), row('b.png', 'Effusion|Fracture'), row('c.png', 'No Finding|Mass')].join('\n');
  const table = parseLabelText(text, 'x.csv');
  t.is(table.unknownFinding, 2);
  t.false(table.rows.has('b.png'));
  t.true(table.rows.has('a.png'));
});

test('labels strict names line and value', (t) => {
  const text = [HEADER_2020, row('a.png', 'Effusion'), row('b.png', 'Effusion|Fracture')].join('\n');
  t.throws(() => parseLabelText(text, 'x.csv', { strict: true }), { message: /x\.csv line 3: unknown finding 'Fracture'/ });
});

test('labels skip malformed rows', (t) => {
  const text = [HEADER_2020, row('a.png', 'Effusion'), 'b.png,Mass,0,2', row('', 'Mass'), row('a.png', 'Mass')].join('\n');
  const table = parseLabelText(text, 'x.csv');
  t.is(table.malformed, 3);
  t.is(table.rows.size, 1);
  t.deepEqual(table.rows.get('a.png')!.labels[2], 1);
});

test('labels strict names malformed line', (t) => {
  const text = [HEADER_2020, row('a.png', 'Effusion'), 'b.png,Mass,0,2'].join('\n');
  t.throws(() => parseLabelText(text, 'x.csv', { strict: true }), { message: /x\.csv line 3: expected 11 fields, found 4/ });
});

test('labels unclosed quote names its line', (t) => {
  const text = [HEADER_2020, row('a.png', 'Effusion'), row('b.png', '"Mass'), row('c.png', 'Nodule'), row('d.png', 'Hernia')].join('\n');
  const error = t.throws(() => parseLabelText(text, 'x.csv'));
  t.regex(error?.message ?? '', /x\.csv/);
  t.regex(error?.message ?? '', /quote opened on line 3 is never closed/);
  t.regex(error?.message ?? '', /Fix or remove that row/);
});

test('labels reject missing column', (t) => {
  t.throws(() => parseLabelText('Image Index,Finding Labels\na.png,Mass\n', 'x.csv'), { message: /no 'Patient ID' column/ });
});

test('labels keep filter matches full parse', (t) => {
  const text = [HEADER_2020, row('a.png', 'Effusion', '1'), row('b.png', 'Mass', '2'), row('c.png', 'Nodule', '3')].join('\n');
  const full = parseLabelText(text, 'x.csv');
  const kept = parseLabelText(text, 'x.csv', { keep: new Set(['c.png']) });
  t.deepEqual([...kept.rows.keys()], ['c.png']);
  t.deepEqual(kept.rows.get('c.png'), full.rows.get('c.png'));
});

test('labels keep filter with quotes', (t) => {
  const text = [HEADER_2020, row('a.png', 'Effusion'), `"b.png","Mass",0,2,57,M,PA,1,1,1,1`].join('\n');
  const kept = parseLabelText(text, 'x.csv', { keep: new Set(['b.png']) });
  t.deepEqual([...kept.rows.keys()], ['b.png']);
  t.is(kept.rows.get('b.png')!.line, 3);
});

sharedTest('labels 2017 form parses equally', (t) => {
  const names = sampleNames();
  const lines = sampleLabelLines(names);
  t.is(lines.length, 622);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-labels-'));
  const file2017 = path.join(dir, 'Data_Entry_2017.csv');
  fs.writeFileSync(file2017, toForm2017(lines).join('\n') + '\n');
  const written = fs.readFileSync(file2017, 'utf8').split('\n');
  t.true(written[0].endsWith('OriginalImagePixelSpacing[x,y],'), written[0]);
  t.regex(written[1], /^\d{8}_\d{3}\.png,[^,]+,\d+,\d+,\d{3}Y,[FM],(PA|AP),.*,$/);

  const form2017 = readLabelFile(file2017);
  const form2020 = readLabelFile(path.join(SAMPLE_DIR, 'Data_Entry_2017_v2020.csv'), { keep: names });
  t.is(form2017.form, '2017');
  t.is(form2020.form, '2020');
  t.is(form2017.malformed, 0);
  t.is(form2017.rows.size, 621);
  for (const [image, expected] of form2020.rows) {
    const actual = form2017.rows.get(image);
    t.deepEqual(actual?.labels, expected.labels, image);
    t.is(actual?.patient, expected.patient, image);
  }
  fs.rmSync(dir, { recursive: true });
});

sharedTest('labels full file parses', (t) => {
  const table = readLabelFile(path.join(SAMPLE_DIR, 'Data_Entry_2017_v2020.csv'));
  t.is(table.rows.size, 112120);
  t.is(table.malformed + table.unknownFinding, 0);
});

sharedTest('labels parsed once per process', (t) => {
  const file = path.join(SAMPLE_DIR, 'Data_Entry_2017_v2020.csv');
  const full = readLabelFile(file);
  t.is(readLabelFile(file), full, 'a second full read returns the cached table');

  const kept = readLabelFile(file, { keep: new Set(['00000001_000.png', '00000100_000.png']) });
  t.deepEqual([...kept.rows.keys()].sort(), ['00000001_000.png', '00000100_000.png']);
  t.is(kept.rows.get('00000100_000.png'), full.rows.get('00000100_000.png'), 'a subset reuses the parsed rows');
});
