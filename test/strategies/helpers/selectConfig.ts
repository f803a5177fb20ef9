// Shared settings of the select-run tests: the mini CLIP fixture on the ChestX-ray14 sample,
// with small split limits so each strategy runs in seconds.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import type { SelectConfig } from '../../../lib/strategies/selectRun.ts';
import { readJson } from '../../../lib/util/atomic.ts';
import { hasShared, sharedPath } from '../../helpers/shared.ts';

export const shared = hasShared('fixtures', 'clip-mini') && hasShared('data', 'chestxray14-sample') && hasShared('data', 'natural', 'cifar10-test') ? test.serial : test.skip;

// The mini fixture has 3 vision blocks, so its units are vision.embed, vision.block.0-2, vision.head.
export const VISION_UNITS = ['vision.embed', 'vision.block.0', 'vision.block.1', 'vision.block.2', 'vision.head'];

export function baseConfig(overrides: Partial<SelectConfig>): SelectConfig {
  return {
    strategy: 'gradient',
    method: 'rgn',
    checkpoint: sharedPath('fixtures', 'clip-mini', 'hf-format'),
    dataset: 'chestxray14',
    data: sharedPath('data', 'chestxray14-sample'),
    source: null,
    units: 2,
    seed: 1,
    limit: { train: 16, val: 16, test: 8 },
    budget: null,
    settings: {},
    runs: fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-select-')),
    ...overrides,
  };
}

export function checkRecord(t: ExecutionContext, runDir: string, expectedStrategy: string): void {
  for (const file of ['config.json', 'environment.json', 'selection.json', 'run.log', 'complete.json']) {
    t.true(fs.existsSync(path.join(runDir, file)), `${file} is missing`);
  }
  const config = readJson<{ kind: string; checkpointSha256: string }>(path.join(runDir, 'config.json'));
  t.is(config.kind, 'select');
  t.regex(config.checkpointSha256, /^[0-9a-f]{64}$/);
  const selection = readJson<{ strategy: string; plan: { train: string[] }; scores: Record<string, number>; cost: { wallSeconds: number } }>(
    path.join(runDir, 'selection.json'),
  );
  t.is(selection.strategy, expectedStrategy);
  t.true(selection.plan.train.includes('head'), 'the task head trains');
  for (const unit of [...VISION_UNITS, 'text.embed', 'logit_scale', 'head']) t.true(Number.isFinite(selection.scores[unit]), `score of ${unit}`);
  t.true(selection.cost.wallSeconds > 0);
}

