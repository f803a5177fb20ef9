import test from 'ava';
import { defaultStudyConfig } from '../../lib/study/defaultConfig.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

const sharedTest = hasShared('fixtures', 'clip-mini') && hasShared('data', 'chestxray14-sample') && hasShared('data', 'natural') ? test : test.skip;

sharedTest('default study fits ViT-B/32 heap', (t) => {
  const config = defaultStudyConfig({
    checkpoint: sharedPath('fixtures', 'clip-mini', 'hf-format'),
    data: sharedPath('data', 'chestxray14-sample'),
    source: sharedPath('data', 'natural'),
  });

  // Full fine-tuning of ViT-B/32 on the wasm backend reached the 4 GiB heap with micro-batches
  // of 8 (bench/memory-full-ft.ts), and the default study's download hint is ViT-B/32.
  t.true((config.train.microBatchSize as number) <= 4, `microBatchSize ${config.train.microBatchSize}`);
  // Several micro-batches per step, so that training can spread them over threads.
  t.true((config.train.batchSize as number) / (config.train.microBatchSize as number) >= 2);
});
