import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { ClipTokenizer } from '../../lib/clip/tokenizer.ts';
import { openImageFolder } from '../../lib/data/imageFolder.ts';
import { classEmbeddings, sourceZeroShotAccuracy, summariseForgetting, type ClipImageTower, type SourceAccuracy } from '../../lib/eval/forgetting.ts';
import type { ClipTextTower } from '../../lib/eval/zeroShot.ts';
import { ClipModel } from '../../lib/clip/model.ts';
import { DEFAULT_PREPROCESS } from '../../lib/clip/preprocess.ts';
import { initBackend } from '../../lib/util/backend.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

const tokenizer = ClipTokenizer.fromDir();
const COLOURS = ['red', 'green', 'blue'];
const COLOUR_TOKENS = COLOURS.map((c) => tokenizer.encode(c)[0]);
const PREPROCESS = { size: 32, mean: [0, 0, 0] as [number, number, number], std: [1, 1, 1] as [number, number, number] };

/** Text tower stand-in: a prompt naming colour c maps to the unit vector e_c. */
const textModel: ClipTextTower = {
  config: { text: { contextLength: 77 } },
  encodeText: (ids) =>
    tf.tensor2d(ids.arraySync().map((row) => COLOUR_TOKENS.map((token) => (row.includes(token) ? 1 : 0)))),
  logitScale: () => tf.scalar(100),
};

/** Image tower stand-in: the mean of each RGB channel, optionally with channels permuted. */
function imageModel(permutation = [0, 1, 2]): ClipImageTower & { truncateSeen: Array<number | undefined> } {
  const truncateSeen: Array<number | undefined> = [];
  return {
    truncateSeen,
    encodeImage(pixels, options) {
      truncateSeen.push(options?.truncate);
      const means = tf.mean(pixels, [2, 3]) as tf.Tensor2D;
      return tf.gather(means, permutation, 1) as tf.Tensor2D;
    },
  };
}

async function makeColourSet(perClass: number, corrupt = 0): Promise<string> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-forget-'));
  for (const [c, colour] of COLOURS.entries()) {
    fs.mkdirSync(path.join(root, colour));
    for (let i = 0; i < perClass; i++) {
      const rgb = [20, 20, 20];
      rgb[c] = 200 + i;
      await sharp({ create: { width: 40, height: 36, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } })
        .png()
        .toFile(path.join(root, colour, `${i}.png`));
    }
  }
  for (let i = 0; i < corrupt; i++) fs.writeFileSync(path.join(root, 'red', `broken${i}.png`), 'not a png');
  return root;
}

test.before(async () => {
  await initBackend();
});

test('class embeddings follow class names', (t) => {
  const embeddings = classEmbeddings(textModel, tokenizer, COLOURS);
  t.is(embeddings.length, 3);
  embeddings.forEach((e, c) => t.true(Math.abs(e[c] - 1) < 1e-6, `class ${c}`));
});

test('template without placeholder is rejected', (t) => {
  t.throws(() => classEmbeddings(textModel, tokenizer, COLOURS, ['a photo.']), { message: /no \{class\} placeholder/ });
});

test('matching towers reach full accuracy', async (t) => {
  const root = await makeColourSet(3);
  const model = imageModel();
  const result = await sourceZeroShotAccuracy({ imageModel: model, textModel, tokenizer, set: root, preprocess: PREPROCESS, batchSize: 4, truncate: 2 });
  t.is(result.n, 9);
  t.is(result.correct, 9);
  t.is(result.accuracy, 1);
  t.is(result.classes, 3);
  t.true(model.truncateSeen.every((v) => v === 2));
});

test('changed image tower loses accuracy', async (t) => {
  // The image tower now maps red to the green axis and so on, while the text tower is unchanged.
  const root = await makeColourSet(2);
  const result = await sourceZeroShotAccuracy({ imageModel: imageModel([2, 0, 1]), textModel, tokenizer, set: openImageFolder(root), preprocess: PREPROCESS });
  t.is(result.accuracy, 0);
  t.is(result.n, 6);
});

test('limit per class is seeded', async (t) => {
  const root = await makeColourSet(4);
  const options = { imageModel: imageModel(), textModel, tokenizer, set: root, preprocess: PREPROCESS, limitPerClass: 2, seed: 5 };
  const result = await sourceZeroShotAccuracy(options);
  t.is(result.n, 6);
  t.is(result.limitPerClass, 2);
  t.is(result.seed, 5);
});

test('set name overrides folder name', async (t) => {
  const root = await makeColourSet(1);
  const named = await sourceZeroShotAccuracy({ imageModel: imageModel(), textModel, tokenizer, set: root, name: 'colours', preprocess: PREPROCESS });
  const unnamed = await sourceZeroShotAccuracy({ imageModel: imageModel(), textModel, tokenizer, set: root, preprocess: PREPROCESS });
  t.is(named.name, 'colours');
  t.is(unnamed.name, path.basename(root));
});

test('corrupt images are skipped and counted', async (t) => {
  const root = await makeColourSet(2, 2);
  const result = await sourceZeroShotAccuracy({ imageModel: imageModel(), textModel, tokenizer, set: root, preprocess: PREPROCESS });
  t.is(result.skipped, 2);
  t.is(result.n, 6);
  t.is(result.accuracy, 1);
});

test('summary computes drops and mean', (t) => {
  const entry = (name: string, accuracy: number): SourceAccuracy => ({
    name, root: '/x', accuracy, correct: 0, n: 10, classes: 2, skipped: 0, limitPerClass: null, seed: 0, templates: [],
  });
  const summary = summariseForgetting([entry('a', 0.9), entry('b', 0.5)], [entry('a', 0.6), entry('b', 0.6)]);
  t.true(Math.abs(summary.sets.a.drop - 0.3) < 1e-12);
  t.true(Math.abs(summary.sets.b.drop + 0.1) < 1e-12);
  t.true(Math.abs((summary.meanDrop ?? NaN) - 0.1) < 1e-12);
  t.is(summary.sets.a.n, 10);
  t.throws(() => summariseForgetting([entry('a', 0.9)], []), { message: /not after/ });
});

const realTest = hasShared('fixtures', 'clip-mini') && hasShared('data', 'natural') ? test.serial : test.skip;

realTest('clip model on natural sets', async (t) => {
  const { model } = await ClipModel.load(sharedPath('fixtures', 'clip-mini', 'hf-format'));
  const other = ClipModel.random(model.config, 7);
  t.teardown(() => {
    model.dispose();
    other.dispose();
  });
  const realTokenizer = ClipTokenizer.fromDir(sharedPath('fixtures', 'clip-mini', 'hf-format'));

  for (const set of ['cifar10-test', 'imagenette-val']) {
    const options = { textModel: model, tokenizer: realTokenizer, set: sharedPath('data', 'natural', set), preprocess: DEFAULT_PREPROCESS, limitPerClass: 2, seed: 1 };
    const before = await sourceZeroShotAccuracy({ ...options, imageModel: model });
    t.is(before.n, 20, `${set}: 2 images for each of 10 classes`);
    t.is(before.classes, 10);
    t.true(before.accuracy >= 0 && before.accuracy <= 1);
    const changed = await sourceZeroShotAccuracy({ ...options, imageModel: other, truncate: 1, limitPerClass: 1 });
    t.is(changed.n, 10);
    t.log(`${set}: top-1 ${before.accuracy} with the fixture's image tower, ${changed.accuracy} with a random truncated one`);
  }
});
