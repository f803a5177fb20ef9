import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readSafetensorsHeader } from '../../lib/clip/safetensors.ts';
import { hasShared, PROJECT_ROOT } from '../helpers/shared.ts';
import { FIXTURE, fixturePath } from './fixture.ts';

const sharedTest = hasShared(...FIXTURE) ? test : test.skip;

function runInfo(checkpoint: string): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ['bin/clipfreeze.js', 'info', '--checkpoint', checkpoint], { cwd: PROJECT_ROOT, encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

sharedTest('info prints config and unit counts', (t) => {
  const { status, stdout, stderr } = runInfo(fixturePath('hf-format'));
  t.is(status, 0, stderr);
  const info = JSON.parse(stdout);

  let fileTotal = 0;
  for (const tensor of readSafetensorsHeader(fixturePath('hf-format', 'model.safetensors')).tensors.values()) {
    fileTotal += tensor.shape.reduce((a, b) => a * b, 1);
  }
  t.is(info.parameters.total, fileTotal);
  t.is(info.format, 'hf');
  t.is(info.config.vision.width, 128);
  t.is(info.config.text.heads, 2);

  // Per block: q/k/v and output projections 4W^2 + 4W, MLP 2 W mlpDim + mlpDim + W, two LayerNorms 4W.
  const blockSize = (W: number, mlp: number) => 4 * W * W + 4 * W + 2 * W * mlp + mlp + W + 4 * W;
  t.is(info.units['vision.block.2'], blockSize(128, 512));
  t.is(info.units['text.block.0'], blockSize(64, 256));
  t.is(info.units['text.embed'], 49408 * 64 + 77 * 64);
  t.is(Object.keys(info.units).filter((unit) => unit.includes('.block.')).length, 6);
  t.is(info.parameters.vision + info.parameters.text + info.parameters.logitScale, info.parameters.total);
});

test('info reports an invalid checkpoint', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-info-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'pytorch_model.bin'), 'not a pickle');
  const { status, stdout, stderr } = runInfo(dir);
  t.is(status, 1);
  t.is(stdout, '');
  t.regex(stderr, /PyTorch pickle checkpoint/);
});
