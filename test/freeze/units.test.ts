import test from 'ava';
import fs from 'node:fs';
import { countPlanParams, formatParamTable } from '../../lib/freeze/paramCount.ts';
import { parsePlan, formatPlan, PlanError } from '../../lib/freeze/plan.ts';
import { decaysWeight, layerUnits, unitOfParam, unitParamCount, shapeSize, type ClipGeometry } from '../../lib/freeze/units.ts';
import { hasShared, sharedPath } from '../helpers/shared.ts';

// Geometry of the mini fixture: 3 vision blocks of width 128, 3 text blocks of width 64, embedding 32.
const MINI: ClipGeometry = {
  embedDim: 32,
  vision: { imageSize: 224, patchSize: 32, width: 128, layers: 3, mlpDim: 512 },
  text: { contextLength: 77, vocabSize: 49408, width: 64, layers: 3, mlpDim: 256 },
};

const VIT_B32: ClipGeometry = {
  embedDim: 512,
  vision: { imageSize: 224, patchSize: 32, width: 768, layers: 12, mlpDim: 3072 },
  text: { contextLength: 77, vocabSize: 49408, width: 512, layers: 12, mlpDim: 2048 },
};

/** Reads tensor shapes from a safetensors header (8-byte little-endian length, then JSON). */
function safetensorsShapes(file: string): Map<string, number[]> {
  const buffer = fs.readFileSync(file);
  const length = Number(buffer.readBigUInt64LE(0));
  const header = JSON.parse(buffer.subarray(8, 8 + length).toString('utf8')) as Record<string, { shape?: number[] }>;
  const shapes = new Map<string, number[]>();
  for (const [name, entry] of Object.entries(header)) if (name !== '__metadata__' && entry.shape) shapes.set(name, entry.shape);
  return shapes;
}

const sharedTest = hasShared('fixtures', 'clip-mini') ? test : test.skip;

test('units cover ViT-B/32 parameter count', (t) => {
  const vision = layerUnits(VIT_B32).filter((u) => u.tower === 'vision');
  const total = vision.reduce((sum, u) => sum + unitParamCount(u), 0);
  // 12 blocks of 7,087,872, the embedding unit's 2,400,000 and the head unit's 394,752.
  t.is(total, 87_849_216);
});

test('units list names in forward order', (t) => {
  const names = layerUnits(MINI).map((u) => u.name);
  t.deepEqual(names, [
    'vision.embed', 'vision.block.0', 'vision.block.1', 'vision.block.2', 'vision.head',
    'text.embed', 'text.block.0', 'text.block.1', 'text.block.2', 'text.head', 'logit_scale', 'head',
  ]);
});

test('units own every parameter once', (t) => {
  const seen = new Set<string>();
  for (const unit of layerUnits(MINI)) {
    for (const p of unit.params) {
      t.false(seen.has(p.name), p.name);
      seen.add(p.name);
    }
  }
  t.is(unitOfParam(MINI, 'visual.transformer.resblocks.1.mlp.c_fc.bias').name, 'vision.block.1');
  t.throws(() => unitOfParam(MINI, 'visual.nonexistent'), { message: /belongs to no layer unit/ });
});

sharedTest('unit shapes match checkpoint', (t) => {
  const shapes = safetensorsShapes(sharedPath('fixtures', 'clip-mini', 'openai-format', 'model.safetensors'));
  const expected = new Map<string, number[]>();
  for (const unit of layerUnits(MINI)) for (const p of unit.params) if (unit.name !== 'head') expected.set(p.name, p.shape);
  t.deepEqual([...expected.keys()].sort(), [...shapes.keys()].sort());
  for (const [name, shape] of expected) t.deepEqual(shape, shapes.get(name), name);
});

sharedTest('plan trainable count sums units', (t) => {
  const shapes = safetensorsShapes(sharedPath('fixtures', 'clip-mini', 'openai-format', 'model.safetensors'));
  const sizeOf = (name: string) => (shapes.has(name) ? shapeSize(shapes.get(name)!) : undefined);
  const unitSize = (prefix: string) => [...shapes.entries()].filter(([n]) => n.startsWith(prefix)).reduce((s, [, sh]) => s + shapeSize(sh), 0);
  const headSize = 32 * 14 + 14;
  const cases: Array<[string, number, number]> = [
    ['head', 0, headSize],
    ['vision.block.1-2,vision.head', 0, unitSize('visual.transformer.resblocks.1.') + unitSize('visual.transformer.resblocks.2.') + unitSize('visual.ln_post.') + unitSize('visual.proj')],
    ['all', 1, unitSize('visual.') - unitSize('visual.transformer.resblocks.2.') + headSize],
    ['vision.embed,head', 2, unitSize('visual.conv1.') + unitSize('visual.class_embedding') + unitSize('visual.positional_embedding') + unitSize('visual.ln_pre.') + headSize],
  ];
  for (const [spec, truncate, expected] of cases) {
    const plan = parsePlan(spec, MINI, truncate);
    const counts = countPlanParams(plan, MINI, 14, sizeOf);
    t.is(counts.trainable, expected, spec);
  }
});

test('plan count table lists states', (t) => {
  const counts = countPlanParams(parsePlan('vision.block.0,head', MINI, 1), MINI);
  const table = formatParamTable(counts);
  t.regex(table, /vision\.block\.0\s+[\d,]+\s+train/);
  t.regex(table, /vision\.block\.2\s+[\d,]+\s+cut/);
  t.regex(table, /vision\.head\s+[\d,]+\s+frozen/);
  t.regex(table, /^trainable [\d,]+ of [\d,]+ \(\d+\.\d+%\); cut off [\d,]+$/m);
});

test('plan parses ranges and shorthands', (t) => {
  t.deepEqual(parsePlan('vision.block.0-1,vision.head', MINI).train, ['vision.block.0', 'vision.block.1', 'vision.head']);
  t.deepEqual(parsePlan('all', MINI).train, ['vision.embed', 'vision.block.0', 'vision.block.1', 'vision.block.2', 'vision.head', 'head']);
  t.deepEqual(parsePlan('all', MINI, 2).train, ['vision.embed', 'vision.block.0', 'vision.head', 'head']);
  t.deepEqual(parsePlan('head', MINI).train, ['head']);
  t.deepEqual(parsePlan('head, vision.block.*', MINI, 1).train, ['vision.block.0', 'vision.block.1', 'head']);
});

test('plan parses JSON', (t) => {
  const plan = parsePlan('{"train": ["vision.block.2", "head"], "truncate": 0, "lrScale": {"head": 10}}', MINI);
  t.deepEqual(plan, { train: ['vision.block.2', 'head'], truncate: 0, lrScale: { head: 10 } });
  t.deepEqual(parsePlan({ train: ['vision.block.0-1'], truncate: 1 }, MINI).train, ['vision.block.0', 'vision.block.1']);
});

test('plan rejects unknown unit', (t) => {
  const err = t.throws(() => parsePlan('vision.block.7', MINI), { instanceOf: PlanError });
  t.regex(err!.message, /Unknown layer unit 'vision\.block\.7'/);
  t.regex(err!.message, /vision\.block\.0-2/);
});

test('plan rejects training cut block', (t) => {
  const err = t.throws(() => parsePlan('vision.block.2,head', MINI, 1), { instanceOf: PlanError });
  t.regex(err!.message, /'vision\.block\.2' is cut off by truncate 1/);
});

test('plan rejects bad truncate', (t) => {
  t.throws(() => parsePlan('head', MINI, 3), { message: /Invalid truncate 3: must be an integer from 0 to 2/ });
  t.throws(() => parsePlan('head', MINI, -1), { message: /Invalid truncate -1/ });
});

test('plan rejects text units', (t) => {
  t.throws(() => parsePlan('text.block.0', MINI), { message: /not on the image-classification path/ });
});

test('plan rejects empty list', (t) => {
  t.throws(() => parsePlan('', MINI), { message: /trains no unit/ });
});

test('plan formats block ranges', (t) => {
  t.is(formatPlan(parsePlan('vision.block.0-1,vision.head,head', MINI)), 'vision.block.0-1,vision.head,head');
  t.is(formatPlan(parsePlan('head', MINI, 2)), 'head (truncate 2)');
});

test('weight decay skips gains and embeddings', (t) => {
  t.true(decaysWeight('visual.transformer.resblocks.0.attn.in_proj_weight', [384, 128]));
  t.true(decaysWeight('visual.conv1.weight', [128, 3, 32, 32]));
  t.true(decaysWeight('head.weight', [32, 14]));
  t.false(decaysWeight('visual.transformer.resblocks.0.ln_1.weight', [128]));
  t.false(decaysWeight('head.bias', [14]));
  t.false(decaysWeight('visual.positional_embedding', [50, 128]));
  t.false(decaysWeight('visual.class_embedding', [128]));
  t.false(decaysWeight('token_embedding.weight', [49408, 64]));
  t.false(decaysWeight('logit_scale', []));
});
