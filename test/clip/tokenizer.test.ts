import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import test from 'ava';
import { ClipTokenizer, cleanText } from '../../lib/clip/tokenizer.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

const sharedTest = hasShared('fixtures', 'clip-mini') ? test : test.skip;

interface Reference {
  texts: string[];
  token_ids: number[][];
}

function readReference(): Reference {
  return JSON.parse(fs.readFileSync(sharedPath('fixtures', 'clip-mini', 'reference.json'), 'utf8')) as Reference;
}

function assertMatchesReference(t: import('ava').ExecutionContext, tokenizer: ClipTokenizer): void {
  const reference = readReference();
  const ids = tokenizer.tokenize(reference.texts);
  reference.texts.forEach((text, i) => {
    t.deepEqual(Array.from(ids.subarray(i * 77, (i + 1) * 77)), reference.token_ids[i], `token ids of "${text}"`);
  });
}

sharedTest('hugging face vocabulary matches reference', (t) => {
  const tokenizer = ClipTokenizer.fromDir(sharedPath('fixtures', 'clip-mini', 'hf-format'));
  t.true(tokenizer.source.includes('vocab.json'));
  assertMatchesReference(t, tokenizer);
});

sharedTest('openai vocabulary matches reference', (t) => {
  const tokenizer = ClipTokenizer.fromDir(sharedPath('fixtures', 'clip-mini', 'openai-format'));
  t.true(tokenizer.source.endsWith('.gz'));
  t.is(tokenizer.vocabSize, 49408);
  assertMatchesReference(t, tokenizer);
});

sharedTest('shipped vocabulary matches reference', (t) => {
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-tok-'));
  const tokenizer = ClipTokenizer.fromDir(empty);
  t.true(tokenizer.source.includes(path.join('lib', 'clip', 'assets')));
  assertMatchesReference(t, tokenizer);
});

sharedTest('both vocabularies agree on ids', (t) => {
  const hf = ClipTokenizer.fromDir(sharedPath('fixtures', 'clip-mini', 'hf-format'));
  const openai = ClipTokenizer.fromDir(sharedPath('fixtures', 'clip-mini', 'openai-format'));
  t.is(hf.vocabSize, openai.vocabSize);
  let mismatches = 0;
  for (const [token, id] of openai.encoder) if (hf.encoder.get(token) !== id) mismatches++;
  t.is(mismatches, 0);
});

test('start end and padding tokens', (t) => {
  const tokenizer = ClipTokenizer.fromDir();
  const ids = tokenizer.tokenize(['a photo of a dog.'], 16);
  t.is(ids.length, 16);
  t.is(ids[0], 49406);
  const end = ids.indexOf(49407);
  t.true(end > 1);
  t.deepEqual(Array.from(ids.subarray(end + 1)), new Array(16 - end - 1).fill(0));
});

test('truncation keeps end token last', (t) => {
  const tokenizer = ClipTokenizer.fromDir();
  const long = Array.from({ length: 120 }, (_, i) => `word${i}`).join(' ');
  const ids = tokenizer.tokenize([long]);
  t.is(ids.length, 77);
  t.is(ids[0], 49406);
  t.is(ids[76], 49407);
  t.is(ids.indexOf(49407), 76);
});

test('cleaning unescapes html and whitespace', (t) => {
  t.is(cleanText('  a &amp;amp; b\t\n c  '), 'a & b c');
  const tokenizer = ClipTokenizer.fromDir();
  t.deepEqual(tokenizer.encode('Fish &amp; Chips'), tokenizer.encode('fish & chips'));
  t.deepEqual(tokenizer.encode('an  x-ray\n of the chest'), tokenizer.encode('an x-ray of the chest'));
});

test('digits become single tokens', (t) => {
  const tokenizer = ClipTokenizer.fromDir();
  const ids = tokenizer.encode('23');
  t.is(ids.length, 2);
  t.is(tokenizer.decode(ids), '2 3');
});

test('decode inverts encode', (t) => {
  const tokenizer = ClipTokenizer.fromDir();
  const text = "a chest x-ray showing pleural thickening, it's small";
  t.is(tokenizer.decode(tokenizer.encode(text)), "a chest x - ray showing pleural thickening , it 's small");
});

test('non-ascii text round trips', (t) => {
  const tokenizer = ClipTokenizer.fromDir();
  const ids = tokenizer.encode('café 東京');
  t.true(ids.length > 0);
  t.is(tokenizer.decode(ids), 'café 東京');
});

test('truncated merge file is rejected', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-tok-'));
  const file = path.join(dir, 'bpe_simple_vocab_16e6.txt.gz');
  fs.writeFileSync(file, zlib.gzipSync('#version: 0.2\nh e\n'));
  const error = t.throws(() => ClipTokenizer.fromDir(dir));
  t.regex(error?.message ?? '', /expected 48894 merges, found 1/);
});
