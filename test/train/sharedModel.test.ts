import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ClipModel } from '../../lib/clip/model.ts';
import { trainRun } from '../../lib/train/trainer.ts';
import { initBackend } from '../../lib/util/backend.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

const sharedTest = hasShared('fixtures', 'clip-mini') && hasShared('data', 'chestxray14-sample') ? test : test.skip;

sharedTest('caller model comes back unchanged', async (t) => {
  await initBackend();
  const checkpoint = sharedPath('fixtures', 'clip-mini', 'hf-format');
  const loaded = await ClipModel.load(checkpoint);
  const before = loaded.model.getWeights();
  const runs = fs.mkdtempSync(path.join(os.tmpdir(), 'shared-model-'));
  const result = await trainRun(
    {
      checkpoint,
      data: sharedPath('data', 'chestxray14-sample'),
      runs,
      trainUnits: 'vision.block.2,vision.head,head',
      epochs: 0.5,
      batchSize: 8,
      microBatchSize: 8,
      lr: 1e-3,
      bootstrap: 0,
      limit: { train: 16, val: 8, test: 8 },
    },
    { model: loaded },
  );
  // Half an epoch of two batches is one optimiser update.
  t.is(result.cost.imagesSeen, 8);
  const after = loaded.model.getWeights();
  const bytes = (data: Float32Array) => Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  for (const [name, tensor] of before) t.true(bytes(after.get(name)!.data).equals(bytes(tensor.data)), `${name} changed`);
  t.is(loaded.model.params.size, before.size, 'the model was disposed');
  loaded.model.dispose();
  fs.rmSync(runs, { recursive: true });
});
