import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { presetConfig } from '../../lib/clip/config.ts';
import { ClipModel } from '../../lib/clip/model.ts';
import { initBackend } from '../../lib/util/backend.ts';
import { hasShared } from '../helpers/shared.ts';
import { firstMismatch, FIXTURE, fixturePath, readPixels, readReference, type Reference } from './fixture.ts';

const sharedTest = hasShared(...FIXTURE) ? test.serial : test.skip;
const TOLERANCE = 1e-4;

let model: ClipModel;
let reference: Reference;
let pixels: Float32Array;

test.before(async () => {
  await initBackend();
  if (!hasShared(...FIXTURE)) return;
  model = (await ClipModel.load(fixturePath('openai-format'))).model;
  reference = readReference();
  pixels = readPixels();
});

test.after.always(() => model?.dispose());

function flat(t: tf.Tensor): number[] {
  return Array.from(t.dataSync());
}

/** L2 norm accumulated in float64: tf.norm's float32 sum drifts by 1e-3 on 3M values. */
function l2Norm(t: tf.Tensor): number {
  let sum = 0;
  for (const v of t.dataSync()) sum += v * v;
  return Math.sqrt(sum);
}

sharedTest('image features match reference', (t) => {
  const features = model.encodeImage(pixels);
  t.deepEqual(features.shape, [5, 32]);
  t.is(firstMismatch(flat(features), reference.image_features.flat(), TOLERANCE), null);
  features.dispose();
});

sharedTest('text features match reference', (t) => {
  const features = model.encodeText(reference.token_ids);
  t.deepEqual(features.shape, [6, 32]);
  t.is(firstMismatch(flat(features), reference.text_features.flat(), TOLERANCE), null);
  features.dispose();
});

sharedTest('forward logits match reference', (t) => {
  const out = model.forward(pixels, reference.token_ids);
  t.is(firstMismatch(flat(out.logitsPerImage), reference.logits_per_image.flat(), TOLERANCE), null, 'logits per image');
  t.is(firstMismatch(flat(out.logitsPerText), reference.logits_per_text.flat(), TOLERANCE), null, 'logits per text');
  t.is(firstMismatch(flat(out.imageFeatures), reference.image_features.flat(), TOLERANCE), null, 'image features');
  t.is(firstMismatch(flat(out.textFeatures), reference.text_features.flat(), TOLERANCE), null, 'text features');
  tf.dispose([out.imageFeatures, out.textFeatures, out.logitsPerImage, out.logitsPerText]);
});

sharedTest('vision block outputs match reference', (t) => {
  const classTokens: number[][] = [];
  const tokenMeans: number[][] = [];
  const features = model.encodeImage(pixels, {
    onBlock: (i, x) => {
      classTokens[i] = flat(tf.slice(x, [0, 0, 0], [-1, 1, -1]));
      tokenMeans[i] = flat(tf.mean(x, 1));
    },
  });
  features.dispose();
  t.is(classTokens.length, 3);
  for (let i = 0; i < 3; i++) {
    t.is(firstMismatch(classTokens[i], reference.vision_block_cls[i].flat(), TOLERANCE), null, `block ${i} class token`);
    t.is(firstMismatch(tokenMeans[i], reference.vision_block_mean[i].flat(), TOLERANCE), null, `block ${i} token mean`);
  }
});

sharedTest('text block outputs match reference', (t) => {
  const ids = reference.token_ids;
  const eot: number[][] = [];
  const features = model.encodeText(ids, {
    onBlock: (i, x) => {
      const values = x.arraySync() as number[][][];
      eot[i] = ids.flatMap((row, n) => values[n][row.indexOf(Math.max(...row))]);
    },
  });
  features.dispose();
  t.is(eot.length, 3);
  for (let i = 0; i < 3; i++) t.is(firstMismatch(eot[i], reference.text_block_eot[i].flat(), TOLERANCE), null, `block ${i} end-of-text token`);
});

sharedTest('gradient norms match reference', (t) => {
  const weights = tf.tensor2d(reference.loss.loss_weights);
  const variables = [...model.params.values()];
  const { value, grads } = tf.variableGrads(() => {
    const out = model.forward(pixels, reference.token_ids);
    tf.dispose([out.imageFeatures, out.textFeatures, out.logitsPerText]);
    return tf.div(tf.sum(tf.mul(out.logitsPerImage, weights)), out.logitsPerImage.size) as tf.Scalar;
  }, variables);

  t.is(firstMismatch([value.dataSync()[0]], [reference.loss.value], TOLERANCE), null, 'loss value');
  t.is(Object.keys(grads).length, Object.keys(reference.grad_l2_norms).length, 'number of gradients');
  for (const [name, variable] of model.params) {
    const norm = l2Norm(grads[variable.name]);
    const expected = reference.grad_l2_norms[name];
    const relative = Math.abs(norm - expected) / Math.abs(expected);
    t.true(relative <= 1e-3, `${name}: gradient norm ${norm}, expected ${expected} (relative error ${relative.toExponential(2)})`);
  }
  tf.dispose([weights, value, ...Object.values(grads)]);
});

sharedTest('frozen blocks keep trainable gradients', (t) => {
  const weights = tf.tensor2d(reference.loss.loss_weights);
  const frozen = [...model.params.entries()].filter(([name]) => /^visual\.transformer\.resblocks\.[12]\./.test(name));
  for (const [, variable] of frozen) variable.trainable = false;
  try {
    const trainable = [...model.params.values()].filter((v) => v.trainable);
    const { value, grads } = tf.variableGrads(() => {
      const out = model.forward(pixels, reference.token_ids);
      tf.dispose([out.imageFeatures, out.textFeatures, out.logitsPerText]);
      return tf.div(tf.sum(tf.mul(out.logitsPerImage, weights)), out.logitsPerImage.size) as tf.Scalar;
    }, trainable);
    t.is(Object.keys(grads).length, model.params.size - frozen.length);
    for (const name of ['visual.transformer.resblocks.0.mlp.c_fc.weight', 'visual.conv1.weight', 'visual.proj']) {
      const norm = l2Norm(grads[model.params.get(name)!.name]);
      const expected = reference.grad_l2_norms[name];
      t.true(Math.abs(norm - expected) <= 1e-3 * expected, `${name}: gradient norm ${norm}, expected ${expected}`);
    }
    tf.dispose([value, ...Object.values(grads)]);
  } finally {
    for (const [, variable] of frozen) variable.trainable = true;
    weights.dispose();
  }
});

sharedTest('parameter norms match reference', (t) => {
  for (const [name, variable] of model.params) {
    const norm = l2Norm(variable);
    const expected = reference.param_l2_norms[name];
    t.true(Math.abs(norm - expected) <= 1e-4 * Math.max(1, expected), `${name}: norm ${norm}, expected ${expected}`);
  }
});

sharedTest('truncate skips final blocks', (t) => {
  const truncated = model.encodeImage(pixels, { truncate: 1 });
  const manual = tf.tidy(() => model.visionHead(model.visionBlock(1, model.visionBlock(0, model.visionEmbed(pixels)))));
  t.is(firstMismatch(flat(truncated), flat(manual), 1e-6), null);
  const full = model.encodeImage(pixels);
  t.not(firstMismatch(flat(truncated), flat(full), 1e-3), null, 'truncated features differ from the full model');
  tf.dispose([truncated, manual, full]);
});

sharedTest('truncate rejects too many blocks', (t) => {
  t.throws(() => model.encodeImage(pixels, { truncate: 4 }), { message: /Invalid truncate = 4: expected an integer from 0 to 3/ });
});

sharedTest('token id outside vocabulary is rejected', (t) => {
  const ids = reference.token_ids.map((row) => [...row]);
  ids[1][3] = 49408;
  t.throws(() => model.encodeText(ids), { message: /Invalid token id 49408 in row 1: the vocabulary has ids 0-49407/ });
});

sharedTest('encode releases intermediates', (t) => {
  const before = tf.memory().numTensors;
  const features = model.encodeImage(pixels);
  const text = model.encodeText(reference.token_ids);
  t.is(tf.memory().numTensors, before + 2);
  tf.dispose([features, text]);
});

sharedTest('weights round-trip canonical layout', (t) => {
  const weights = model.getWeights();
  const conv = weights.get('visual.conv1.weight')!;
  t.deepEqual(conv.shape, [128, 3, 32, 32]);
  t.deepEqual(model.canonicalShape('visual.transformer.resblocks.0.attn.in_proj_weight'), [384, 128]);
  t.deepEqual(model.params.get('visual.transformer.resblocks.0.attn.in_proj_weight')!.shape, [128, 384], 'stored as [in, out]');

  const before = flat(model.encodeText(reference.token_ids));
  model.setWeights(weights);
  const after = flat(model.encodeText(reference.token_ids));
  t.is(firstMismatch(after, before, 0), null);
});

sharedTest('setWeights rejects wrong shape', (t) => {
  const bad = new Map([['visual.proj', { shape: [32, 128], data: new Float32Array(32 * 128) }]]);
  t.throws(() => model.setWeights(bad), { message: /Weight 'visual\.proj' has shape \[32, 128\] .* expected \[128, 32\]/ });
});

test.serial('ViT-B/32 random forward gives 512-d features', (t) => {
  const config = presetConfig('ViT-B/32');
  const random = ClipModel.random(config, 0);
  t.is(random.parameterCount('visual.'), 87_849_216);
  const pixelsOne = tf.randomNormal([1, 3, 224, 224], 0, 1, 'float32', 1) as tf.Tensor4D;
  const features = random.encodeImage(pixelsOne);
  t.deepEqual(features.shape, [1, 512]);
  t.true(flat(features).every(Number.isFinite));
  tf.dispose([pixelsOne, features]);
  random.dispose();
});
