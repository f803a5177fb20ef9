import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import type { EmbedResult } from '../../lib/cli/embed.ts';
import { hasShared, PROJECT_ROOT, sharedPath } from '../helpers/shared.ts';

const run = promisify(execFile);
const sharedTest = hasShared('fixtures', 'clip-mini') ? test : test.skip;
const fixture = (...parts: string[]) => sharedPath('fixtures', 'clip-mini', ...parts);

interface Reference {
  images: string[];
  texts: string[];
  token_ids: number[][];
  image_features: number[][];
  text_features: number[][];
  logits_per_image: number[][];
  logits_per_text: number[][];
}

async function embedCli(args: string[]): Promise<EmbedResult> {
  const { stdout } = await run(process.execPath, [path.join(PROJECT_ROOT, 'bin', 'clipfreeze.js'), 'embed', ...args], {
    cwd: PROJECT_ROOT,
    maxBuffer: 64 * 1024 * 1024,
  });
  return JSON.parse(stdout) as EmbedResult;
}

/** Largest error, absolute for |expected| <= 1 and relative above. */
function maxError(actual: number[][], expected: number[][]): number {
  let worst = 0;
  expected.forEach((row, i) =>
    row.forEach((e, j) => {
      worst = Math.max(worst, Math.abs(actual[i][j] - e) / Math.max(1, Math.abs(e)));
    }),
  );
  return worst;
}

// The preprocessing test shows the pixels equal the reference exactly, so the end-to-end outputs
// are held to the same 1e-4 tolerance as the model's own tests.
const TOLERANCE = 1e-4;

for (const format of ['hf-format', 'openai-format']) {
  sharedTest(`embed cli matches reference (${format})`, async (t) => {
    const reference = JSON.parse(fs.readFileSync(fixture('reference.json'), 'utf8')) as Reference;
    const args = ['--checkpoint', fixture(format)];
    for (const image of reference.images) args.push('--image', fixture('images', image));
    for (const text of reference.texts) args.push('--text', text);
    const out = await embedCli(args);

    t.is(typeof out.backend, 'string');
    t.deepEqual(out.token_ids, reference.token_ids);
    t.is(out.image_features.length, reference.images.length);
    t.is(out.text_features.length, reference.texts.length);
    const errors = {
      image_features: maxError(out.image_features, reference.image_features),
      text_features: maxError(out.text_features, reference.text_features),
      logits_per_image: maxError(out.logits_per_image ?? [], reference.logits_per_image),
      logits_per_text: maxError(out.logits_per_text ?? [], reference.logits_per_text),
    };
    t.log(`max error vs reference: ${JSON.stringify(errors)}`);
    for (const [name, error] of Object.entries(errors)) t.true(error < TOLERANCE, `${name}: max error ${error}`);
  });
}

sharedTest('embed cli texts only', async (t) => {
  const out = await embedCli(['--checkpoint', fixture('hf-format'), '--text', 'No Finding']);
  t.is(out.text_features.length, 1);
  t.deepEqual(out.image_features, []);
  t.is(out.logits_per_image, null);
});

sharedTest('embed cli rejects empty input', async (t) => {
  const error = await t.throwsAsync(embedCli(['--checkpoint', fixture('hf-format')]));
  t.regex(String((error as { stderr?: string }).stderr), /Nothing to embed/);
});
