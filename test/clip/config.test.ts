import test from 'ava';
import fs from 'node:fs';
import { inferConfig, parseConfig, presetConfig, PRESETS, type ClipConfig } from '../../lib/clip/config.ts';
import { canonicalShapes } from '../../lib/clip/checkpointLayouts.ts';
import { hasShared } from '../helpers/shared.ts';
import { FIXTURE, fixturePath } from './fixture.ts';

const sharedTest = hasShared(...FIXTURE) ? test : test.skip;

function readJson(...parts: string[]): unknown {
  return JSON.parse(fs.readFileSync(fixturePath(...parts), 'utf8'));
}

/** The clip-mini geometry as its PyTorch constructor builds it. */
const MINI: Omit<ClipConfig, 'imageMean' | 'imageStd'> = {
  embedDim: 32,
  vision: { imageSize: 224, patchSize: 32, width: 128, layers: 3, heads: 2, mlpDim: 512 },
  text: { contextLength: 77, vocabSize: 49408, width: 64, layers: 3, heads: 2, mlpDim: 256 },
  layerNormEps: 1e-5,
  activation: 'quick_gelu',
};

sharedTest('config parses Hugging Face json', (t) => {
  const config = parseConfig(readJson('hf-format', 'config.json'));
  t.like(config, MINI);
  t.deepEqual(config.imageMean, [0.48145466, 0.4578275, 0.40821073]);
});

sharedTest('config parses OpenAI json', (t) => {
  t.like(parseConfig(readJson('openai-format', 'config.json')), MINI);
});

test('config infers from canonical shapes', (t) => {
  const preset = presetConfig('ViT-B/16');
  t.deepEqual(inferConfig(canonicalShapes(preset)), preset);
});

test('inferred heads follow width over 64', (t) => {
  // Shapes cannot encode head counts, so inference applies OpenAI's width / 64 rule.
  const mini = { ...MINI, imageMean: PRESETS['ViT-B/32'].imageMean, imageStd: PRESETS['ViT-B/32'].imageStd } as ClipConfig;
  const inferred = inferConfig(canonicalShapes(mini));
  t.is(inferred.text.heads, 1);
  t.is(inferred.vision.heads, 2);
  t.is(inferred.vision.mlpDim, 512);
  t.is(inferred.vision.imageSize, 224);
});

test('infer names the missing tensor', (t) => {
  const shapes = canonicalShapes(presetConfig('ViT-B/32'));
  shapes.delete('visual.proj');
  t.throws(() => inferConfig(shapes), { message: /tensor 'visual\.proj' is missing/ });
});

test('presets have the published sizes', (t) => {
  t.like(PRESETS['ViT-B/32'], { embedDim: 512, vision: { patchSize: 32, width: 768, layers: 12, heads: 12, mlpDim: 3072 } });
  t.like(PRESETS['ViT-B/32'], { text: { width: 512, layers: 12, heads: 8, contextLength: 77, vocabSize: 49408 } });
  t.like(PRESETS['ViT-B/16'], { embedDim: 512, vision: { patchSize: 16, width: 768, layers: 12, heads: 12 } });
  t.like(PRESETS['ViT-L/14'], { embedDim: 768, vision: { patchSize: 14, width: 1024, layers: 24, heads: 16, mlpDim: 4096 } });
  t.like(PRESETS['ViT-L/14'], { text: { width: 768, layers: 12, heads: 12 } });
});

test('unknown preset lists the presets', (t) => {
  t.throws(() => presetConfig('ViT-H/14'), { message: /Unknown CLIP preset 'ViT-H\/14'. Available presets: ViT-B\/32, ViT-B\/16, ViT-L\/14/ });
});

test('Hugging Face defaults give ViT-B/32', (t) => {
  const config = parseConfig({ projection_dim: 512, vision_config: {}, text_config: {} });
  t.deepEqual(config, PRESETS['ViT-B/32']);
});

test('Hugging Face gelu activation parses', (t) => {
  t.is(parseConfig({ vision_config: { hidden_act: 'gelu' }, text_config: {} }).activation, 'gelu');
});

test('open_clip config parses', (t) => {
  const config = parseConfig({
    embed_dim: 512,
    quick_gelu: true,
    vision_cfg: { image_size: 224, layers: 12, width: 768, patch_size: 32 },
    text_cfg: { context_length: 77, vocab_size: 49408, width: 512, heads: 8, layers: 12 },
  });
  t.deepEqual(config, PRESETS['ViT-B/32']);
});

test('open_clip without quick_gelu uses gelu', (t) => {
  const config = parseConfig({ embed_dim: 512, vision_cfg: { patch_size: 32 }, text_cfg: {} });
  t.is(config.activation, 'gelu');
});

test('config rejects missing OpenAI key', (t) => {
  t.throws(() => parseConfig({ vision_width: 768, transformer_width: 512 }, 'my.json'), { message: /Invalid CLIP config in my\.json: required key 'embed_dim' is missing/ });
});

test('config rejects ResNet vision layers', (t) => {
  const resnet = { embed_dim: 1024, image_resolution: 224, vision_layers: [3, 4, 6, 3], vision_width: 64, vision_patch_size: null, transformer_width: 512, transformer_layers: 12 };
  t.throws(() => parseConfig(resnet), { message: /ResNet image encoder/ });
});

test('config rejects indivisible heads', (t) => {
  t.throws(() => parseConfig({ vision_config: { hidden_size: 100, num_attention_heads: 3 }, text_config: {} }), {
    message: /vision width 100 is not divisible by 3 heads/,
  });
});

test('config rejects unknown keys', (t) => {
  t.throws(() => parseConfig({ hidden_size: 768 }, 'c.json'), { message: /Unrecognised CLIP config in c\.json.*Found keys: hidden_size/ });
});

test('config rejects non-numeric sizes', (t) => {
  t.throws(() => parseConfig({ vision_config: { hidden_size: '768' }, text_config: {} }), { message: /'hidden_size' = "768", expected a number/ });
});

test('Hugging Face config_dict keys are read', (t) => {
  const config = parseConfig({ text_config: null, text_config_dict: { hidden_size: 768, num_attention_heads: 12 }, vision_config: {} });
  t.is(config.text.width, 768);
  t.is(config.text.heads, 12);
});
