import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { ClipModel } from '../../lib/clip/model.ts';
import { parsePlan } from '../../lib/freeze/plan.ts';
import { markFrozenVariables } from '../../lib/train/frozenVariables.ts';
import { initBackend } from '../../lib/util/backend.ts';
import { benchConfig } from '../../bench/shapes.ts';

test('frozen variables marked and restored', async (t) => {
  await initBackend();
  const model = ClipModel.random(benchConfig('tiny'), 0);
  const plan = parsePlan('vision.block.3,vision.head,head', model.config);
  const restore = markFrozenVariables(model, plan);

  t.false(model.params.get('visual.transformer.resblocks.2.mlp.c_fc.weight')!.trainable);
  t.false(model.params.get('visual.conv1.weight')!.trainable);
  t.false(model.params.get('transformer.resblocks.0.attn.in_proj_weight')!.trainable);
  t.true(model.params.get('visual.transformer.resblocks.3.mlp.c_fc.weight')!.trainable);
  t.true(model.params.get('visual.proj')!.trainable);

  restore();
  t.true(model.params.get('visual.transformer.resblocks.2.mlp.c_fc.weight')!.trainable);
  t.true(model.params.get('visual.conv1.weight')!.trainable);
  model.dispose();
});

test('frozen blocks keep lower gradients', async (t) => {
  await initBackend();
  const model = ClipModel.random(benchConfig('tiny'), 0);
  const trained = model.params.get('visual.transformer.resblocks.0.mlp.c_fc.weight')!;
  const pixels = tf.randomNormal([2, 3, 32, 32], 0, 1, 'float32', 1) as tf.Tensor4D;
  const gradient = (): Float32Array => {
    // The gradient flows back through the three blocks above block 0.
    const { value, grads } = tf.variableGrads(() => tf.sum(model.encodeImage(pixels)) as tf.Scalar, [trained]);
    const values = grads[trained.name].dataSync() as Float32Array;
    tf.dispose([value, ...Object.values(grads)]);
    return values;
  };

  const reference = gradient();
  const restore = markFrozenVariables(model, parsePlan('vision.block.0,head', model.config));
  const withFrozen = gradient();
  restore();

  let maxDiff = 0;
  for (let i = 0; i < reference.length; i++) maxDiff = Math.max(maxDiff, Math.abs(reference[i] - withFrozen[i]));
  t.true(reference.some((v) => v !== 0));
  t.is(maxDiff, 0);
  pixels.dispose();
  model.dispose();
});
