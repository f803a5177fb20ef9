import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { ClipTokenizer } from '../../lib/clip/tokenizer.ts';
import { CHESTXRAY14_FINDINGS } from '../../lib/data/labels.ts';
import { initBackend } from '../../lib/util/backend.ts';
import {
  buildZeroShotClassifier,
  defaultPromptsFile,
  ensembleTextEmbedding,
  linearHeadInit,
  loadPrompts,
  renderTemplates,
  validatePrompts,
  zeroShotScores,
  type PromptSet,
  type ClipTextTower,
} from '../../lib/eval/zeroShot.ts';

const tokenizer = ClipTokenizer.fromDir();
const NEGATION_WORDS = ['no', 'without'].map((w) => tokenizer.encode(w)[0]);

/**
 * A text tower stand-in with E = 3: prompts containing a negation map near [0, 1, 0], others near
 * [1, 0, 0], each plus a small text-dependent offset on the third axis so ensembling has work to do.
 */
function fakeTextModel(scale = 10): ClipTextTower {
  return {
    config: { text: { contextLength: 77 } },
    encodeText(ids: tf.Tensor2D): tf.Tensor2D {
      const rows = ids.arraySync();
      return tf.tensor2d(
        rows.map((row) => {
          const negated = row.some((id) => NEGATION_WORDS.includes(id));
          const offset = (row.reduce((a, b) => a + b, 0) % 7) / 20;
          return negated ? [0, 2, offset] : [3, 0, offset];
        }),
      );
    },
    logitScale: () => tf.scalar(scale),
  };
}

test.before(async () => {
  await initBackend();
});

const prompts: PromptSet = {
  dataset: 'toy',
  positiveTemplates: ['a chest x-ray showing {finding}.', '{finding} is present.'],
  negativeTemplates: ['a chest x-ray with no {finding}.', 'a chest x-ray without {finding}.'],
  findings: { Mass: 'mass', Edema: 'pulmonary edema' },
};

test('templates fill the placeholder', (t) => {
  t.deepEqual(renderTemplates(['x {finding} y {finding}'], 'edema'), ['x edema y edema']);
  t.deepEqual(renderTemplates(['a photo of a {class}.'], 'cat', '{class}'), ['a photo of a cat.']);
});

test('ensemble embedding has unit norm', (t) => {
  const embedding = ensembleTextEmbedding(fakeTextModel(), tokenizer, renderTemplates(prompts.positiveTemplates, 'mass'));
  const norm = Math.hypot(...embedding);
  t.true(Math.abs(norm - 1) < 1e-6, `norm ${norm}`);
  t.true(embedding[0] > 0.9);
});

test('ensemble averages normalised features', (t) => {
  // Two prompts with different raw norms: the mean is taken after normalising each.
  const model = fakeTextModel();
  const texts = ['a chest x-ray showing mass.', 'a chest x-ray with no mass.'];
  const embedding = ensembleTextEmbedding(model, tokenizer, texts);
  const rows = texts.map((text) => {
    const ids = tokenizer.tokenize([text]);
    const [row] = model.encodeText(tf.tensor2d(ids, [1, 77], 'int32')).arraySync();
    const norm = Math.hypot(...row);
    return row.map((v) => v / norm);
  });
  const mean = rows[0].map((v, i) => (v + rows[1][i]) / 2);
  const meanNorm = Math.hypot(...mean);
  mean.forEach((v, i) => t.true(Math.abs(embedding[i] - v / meanNorm) < 1e-6, `component ${i}`));
});

test('scores equal pairwise softmax', (t) => {
  const classifier = buildZeroShotClassifier(fakeTextModel(10), tokenizer, prompts, ['Mass', 'Edema']);
  t.is(classifier.logitScale, 10);
  t.is(classifier.embedDim, 3);
  const images = new Float32Array([2, 0.5, 0.1, 0.2, 3, -0.3]);
  const scores = zeroShotScores(classifier, images, 2);
  t.is(scores.length, 4);
  for (let b = 0; b < 2; b++) {
    const x = Array.from(images.slice(b * 3, b * 3 + 3));
    const norm = Math.hypot(...x);
    for (let f = 0; f < 2; f++) {
      const dot = (v: Float32Array) => x.reduce((s, xi, e) => s + (xi / norm) * v[f * 3 + e], 0);
      const pos = Math.exp(10 * dot(classifier.positive));
      const neg = Math.exp(10 * dot(classifier.negative));
      t.true(Math.abs(scores[b * 2 + f] - pos / (pos + neg)) < 1e-5, `image ${b} finding ${f}`);
    }
  }
  t.true(scores[0] > 0.5, 'image along the positive axis scores high');
  t.true(scores[2] < 0.5, 'image along the negative axis scores low');
});

test('linear head reproduces scores', (t) => {
  const classifier = buildZeroShotClassifier(fakeTextModel(7), tokenizer, prompts, ['Mass', 'Edema']);
  const head = linearHeadInit(classifier);
  t.deepEqual(head.shape, [3, 2]);
  t.deepEqual(Array.from(head.bias), [0, 0]);
  const image = new Float32Array([0.3, 1.2, -0.4]);
  const scores = zeroShotScores(classifier, image, 1);
  const norm = Math.hypot(...image);
  for (let f = 0; f < 2; f++) {
    let logit = 0;
    for (let e = 0; e < 3; e++) logit += (image[e] / norm) * head.weight[e * 2 + f];
    t.true(Math.abs(1 / (1 + Math.exp(-logit)) - scores[f]) < 1e-6, `finding ${f}`);
  }
});

test('wrong feature size is rejected', (t) => {
  const classifier = buildZeroShotClassifier(fakeTextModel(), tokenizer, prompts, ['Mass']);
  t.throws(() => zeroShotScores(classifier, new Float32Array(4), 1), { message: /expected 1 x 3/ });
});

test('shipped chestxray14 prompts are valid', (t) => {
  const set = loadPrompts(defaultPromptsFile('chestxray14'), [...CHESTXRAY14_FINDINGS]);
  t.is(Object.keys(set.findings).length, 14);
  t.is(set.findings.Pleural_Thickening, 'pleural thickening');
  t.true(set.positiveTemplates.length > 0);
  t.true(set.negativeTemplates.length > 0);
});

test('prompt file missing key is rejected', (t) => {
  const error = t.throws(() => validatePrompts({ positiveTemplates: ['{finding}'], findings: { Mass: 'mass' } }, ['Mass'], 'p.json'));
  t.regex(error?.message ?? '', /missing key 'negativeTemplates'/);
});

test('template without placeholder is rejected', (t) => {
  const json = { positiveTemplates: ['a chest x-ray'], negativeTemplates: ['no {finding}'], findings: { Mass: 'mass' } };
  const error = t.throws(() => validatePrompts(json, ['Mass'], 'p.json'));
  t.regex(error?.message ?? '', /positiveTemplates\[0\] "a chest x-ray" has no \{finding\}/);
});

test('finding without display name is rejected', (t) => {
  const json = { positiveTemplates: ['{finding}'], negativeTemplates: ['no {finding}'], findings: { Mass: 'mass' } };
  const error = t.throws(() => validatePrompts(json, ['Mass', 'Pleural_Thickening'], 'p.json'));
  t.regex(error?.message ?? '', /no display name for Pleural_Thickening/);
});

test('unreadable prompt file names the file', (t) => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-zs-')), 'prompts.json');
  fs.writeFileSync(file, '{ not json');
  const error = t.throws(() => loadPrompts(file, ['Mass']));
  t.true(error?.message.includes(file));
});
