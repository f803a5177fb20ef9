import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadCheckpoint } from '../../lib/clip/checkpoint.ts';
import { hasShared } from '../helpers/shared.ts';
import { FIXTURE, fixturePath } from './fixture.ts';

const sharedTest = hasShared(...FIXTURE) ? test : test.skip;

interface RawSafetensors {
  header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  data: Buffer;
}

/** Copies a fixture layout (weights and config.json) into a fresh temporary folder. */
function copyLayout(t: ExecutionContext, layout: 'hf-format' | 'openai-format'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-broken-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const file of ['model.safetensors', 'config.json']) fs.copyFileSync(fixturePath(layout, file), path.join(dir, file));
  return dir;
}

function readRaw(file: string): RawSafetensors {
  const bytes = fs.readFileSync(file);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  return { header: JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')), data: bytes.subarray(8 + headerLength) };
}

function writeRaw(file: string, raw: RawSafetensors): void {
  const header = Buffer.from(JSON.stringify(raw.header), 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(header.length));
  fs.writeFileSync(file, Buffer.concat([length, header, raw.data]));
}

/** Rewrites the header of dir/model.safetensors with `edit`, keeping the data bytes. */
function editHeader(dir: string, edit: (header: RawSafetensors['header']) => void): void {
  const file = path.join(dir, 'model.safetensors');
  const raw = readRaw(file);
  edit(raw.header);
  writeRaw(file, raw);
}

sharedTest('missing tensor is named', (t) => {
  const dir = copyLayout(t, 'hf-format');
  editHeader(dir, (header) => delete header['vision_model.post_layernorm.bias']);
  t.throws(() => loadCheckpoint(dir), { message: /missing tensor 'vision_model\.post_layernorm\.bias' \(expected shape \[128\]\)/ });
});

sharedTest('unexpected tensor is named', (t) => {
  const dir = copyLayout(t, 'openai-format');
  editHeader(dir, (header) => {
    header['visual.extra_head.weight'] = { dtype: 'F16', shape: [32], data_offsets: [0, 64] };
  });
  t.throws(() => loadCheckpoint(dir), { message: /unexpected tensor 'visual\.extra_head\.weight' \(shape \[32\]\)/ });
});

sharedTest('misshapen tensor names both shapes', (t) => {
  const dir = copyLayout(t, 'hf-format');
  editHeader(dir, (header) => {
    const entry = header['text_model.encoder.layers.1.self_attn.k_proj.weight'] as { shape: number[] };
    entry.shape = [32, 128];
  });
  t.throws(() => loadCheckpoint(dir), {
    message: /tensor 'text_model\.encoder\.layers\.1\.self_attn\.k_proj\.weight' has shape \[32, 128\], expected \[64, 64\]/,
  });
});

sharedTest('config mismatch names the tensor', (t) => {
  const dir = copyLayout(t, 'openai-format');
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, embed_dim: 64 }));
  t.throws(() => loadCheckpoint(dir), { message: /tensor 'visual\.proj' has shape \[128, 32\], expected \[128, 64\]/ });
});

sharedTest('extra layer is unexpected', (t) => {
  const dir = copyLayout(t, 'openai-format');
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, vision_layers: 2 }));
  t.throws(() => loadCheckpoint(dir), { message: /unexpected tensor 'visual\.transformer\.resblocks\.2\.attn\.in_proj_weight'/ });
});

sharedTest('unknown dtype is named', (t) => {
  const dir = copyLayout(t, 'hf-format');
  editHeader(dir, (header) => {
    (header['logit_scale'] as { dtype: string }).dtype = 'I32';
  });
  t.throws(() => loadCheckpoint(dir), { message: /tensor 'logit_scale' has unsupported dtype I32 \(supported: F32, F16, BF16\)/ });
});

sharedTest('truncated file names the tensor', (t) => {
  const dir = copyLayout(t, 'openai-format');
  const file = path.join(dir, 'model.safetensors');
  fs.truncateSync(file, fs.statSync(file).size - 1000);
  t.throws(() => loadCheckpoint(dir), {
    message: /Truncated safetensors file .*model\.safetensors: it has \d+ bytes, but tensors 'token_embedding\.weight' \(shape \[49408, 64\], bytes \d+-\d+\), 'ln_final\.weight'/,
  });
});

sharedTest('file shorter than header fails', (t) => {
  const dir = copyLayout(t, 'openai-format');
  fs.truncateSync(path.join(dir, 'model.safetensors'), 100);
  t.throws(() => loadCheckpoint(dir), { message: /the header length is \d+ bytes but the file has only 100 bytes/ });
});

sharedTest('non-finite weight is reported', (t) => {
  const dir = copyLayout(t, 'hf-format');
  const file = path.join(dir, 'model.safetensors');
  const raw = readRaw(file);
  const entry = raw.header['logit_scale'] as { data_offsets: [number, number] };
  raw.data.writeFloatLE(Number.NaN, entry.data_offsets[0]);
  writeRaw(file, raw);
  t.throws(() => loadCheckpoint(dir), { message: /Tensor 'logit_scale' .* contains NaN at element 0/ });
});

test('pytorch bin explains conversion', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-broken-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'pytorch_model.bin'), Buffer.from('not a real pickle'));
  const error = t.throws(() => loadCheckpoint(dir));
  t.regex(error!.message, /pytorch_model\.bin is a PyTorch pickle checkpoint/);
  t.regex(error!.message, /openai\/clip-vit-base-patch32 publishes one/);
  t.regex(error!.message, /save_file/);
});

test('pt file path explains conversion', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-broken-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'ViT-B-32.pt');
  fs.writeFileSync(file, Buffer.from('not a real archive'));
  t.throws(() => loadCheckpoint(file), { message: /ViT-B-32\.pt is a PyTorch pickle checkpoint.*torch\.jit\.load/ });
});

test('missing path is named', (t) => {
  t.throws(() => loadCheckpoint('/nonexistent/clip'), { message: /Checkpoint not found: \/nonexistent\/clip/ });
});

test('empty directory is rejected', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-broken-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  t.throws(() => loadCheckpoint(dir), { message: /No \.safetensors file in checkpoint directory/ });
});

sharedTest('missing shard is named', (t) => {
  const dir = copyLayout(t, 'hf-format');
  const weightMap = { logit_scale: 'model.safetensors', text_projection: 'model-00002-of-00002.safetensors' };
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }));
  t.throws(() => loadCheckpoint(dir), { message: /Shard .*model-00002-of-00002\.safetensors listed in .*index\.json was not found/ });
});

sharedTest('unrecognised layout is rejected', (t) => {
  const dir = copyLayout(t, 'hf-format');
  editHeader(dir, (header) => {
    for (const name of Object.keys(header)) {
      if (name === '__metadata__') continue;
      header[`encoder.${name.replace(/^(vision|text)_model\./, '')}`] = header[name];
      delete header[name];
    }
  });
  t.throws(() => loadCheckpoint(dir), { message: /Unrecognised checkpoint layout/ });
});
