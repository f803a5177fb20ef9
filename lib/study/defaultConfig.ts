// The default study that `npm start` runs: every method on a small budget that finishes in
// minutes on a 2-core CPU with a small checkpoint. Inputs come from ./data/ or from the
// environment. A missing input is an error that names what to download and where to put it.
import fs from 'node:fs';
import path from 'node:path';
import { openImageFolder } from '../data/imageFolder.ts';
import { parseStudyConfig, type SourceSetConfig, type StudyConfig } from './config.ts';

export interface DefaultInputs {
  checkpoint: string;
  data: string;
  source: string;
}

/** Resolves the default inputs from CLIPFREEZE_CHECKPOINT, CLIPFREEZE_DATA and CLIPFREEZE_SOURCE_DATA, else ./data/. */
export function defaultInputs(cwd = process.cwd(), env = process.env): DefaultInputs {
  return {
    checkpoint: path.resolve(cwd, env.CLIPFREEZE_CHECKPOINT || 'data/checkpoint'),
    data: path.resolve(cwd, env.CLIPFREEZE_DATA || 'data/chestxray14'),
    source: path.resolve(cwd, env.CLIPFREEZE_SOURCE_DATA || 'data/natural'),
  };
}

/** Throws one error that lists every missing input with what to download and where to put it. */
export function checkDefaultInputs(inputs: DefaultInputs, env = process.env): void {
  const problems: string[] = [];
  const where = (variable: string, folder: string) =>
    env[variable] ? `or point ${variable} (now ${env[variable]}) at an existing ${folder}` : `or set ${variable} to a ${folder}`;
  if (!fs.existsSync(inputs.checkpoint)) {
    problems.push(
      `CLIP checkpoint not found at ${inputs.checkpoint}.\n` +
        `    Download model.safetensors, config.json, vocab.json, merges.txt and preprocessor_config.json of the\n` +
        `    Hugging Face model openai/clip-vit-base-patch32 into that folder (or an OpenAI/open_clip .safetensors file),\n` +
        `    ${where('CLIPFREEZE_CHECKPOINT', 'checkpoint folder or file')}.`,
    );
  }
  if (!fs.existsSync(inputs.data)) {
    problems.push(
      `ChestX-ray14 not found at ${inputs.data}.\n` +
        `    Download the NIH ChestX-ray14 release (nihcc.app.box.com/v/ChestXray-NIHCC): Data_Entry_2017_v2020.csv\n` +
        `    (or Data_Entry_2017.csv), train_val_list.txt, test_list.txt and the images (images/ or Kaggle's\n` +
        `    images_001/images/ ... images_012/images/) into that folder, ${where('CLIPFREEZE_DATA', 'dataset folder')}.`,
    );
  }
  if (!fs.existsSync(inputs.source)) {
    problems.push(
      `Source-domain images not found at ${inputs.source}.\n` +
        `    Put one or more folder-per-class natural-image sets there (for example CIFAR-10 test images as\n` +
        `    cifar10-test/test/<class>/*.jpg, or Imagenette validation images as imagenette-val/val/<wnid>/*.JPEG\n` +
        `    with a classes.txt), ${where('CLIPFREEZE_SOURCE_DATA', 'folder of image sets')}.`,
    );
  }
  if (problems.length) throw new Error(`The default study is missing its inputs:\n  - ${problems.join('\n  - ')}`);
}

/** Finds the folder-per-class sets under `root`: the root itself, or each sub-folder that is one. */
export function discoverSourceSets(root: string, limitPerClass: number): SourceSetConfig[] {
  const asSet = (dir: string): SourceSetConfig | null => {
    try {
      const set = openImageFolder(dir);
      return { name: set.name, path: set.root, limitPerClass };
    } catch {
      return null;
    }
  };
  const direct = asSet(root);
  if (direct) return [direct];

  const sets = fs
    .readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => asSet(path.join(root, e.name)))
    .filter((s): s is SourceSetConfig => s !== null);
  if (sets.length === 0) {
    throw new Error(`No folder-per-class image sets found in ${root}. Expected <set>/<class>/*.jpg or <set>/{test,val}/<class>/*.jpg.`);
  }
  return sets;
}

/** Builds the default study: every method, two seeds, a budget sized for minutes on a 2-core CPU. */
export function defaultStudyConfig(inputs: DefaultInputs): StudyConfig {
  checkDefaultInputs(inputs);
  return parseStudyConfig(
    {
      name: 'default',
      checkpoint: inputs.checkpoint,
      dataset: 'chestxray14',
      data: inputs.data,
      source: discoverSourceSets(inputs.source, 10),
      seeds: [0, 1],
      limit: { train: 128, val: 64, test: 75 },
      // Micro-batches of 4 keep full fine-tuning of ViT-B/32 inside the wasm backend's 4 GiB heap
      // and give each step several micro-batches to share among threads.
      train: { epochs: 2, batchSize: 16, microBatchSize: 4, lr: 1e-4, warmupSteps: 2, patience: 0 },
      methods: [
        { name: 'zero-shot', kind: 'zero-shot' },
        { name: 'full', kind: 'train', plan: 'all' },
        { name: 'truncate-1', kind: 'train', plan: 'all', truncate: 1 },
        { name: 'head-only', kind: 'train', plan: 'head' },
        { name: 'similarity-mmd', kind: 'select', strategy: 'similarity', settings: { method: 'mmd', units: 2 } },
        { name: 'gradient-rgn', kind: 'select', strategy: 'gradient', settings: { method: 'rgn', units: 2 } },
        { name: 'search', kind: 'select', strategy: 'search', settings: { trials: 6 } },
      ],
      bootstrap: 200,
      runs: 'runs',
      report: 'reports/report.html',
      pretrained: true,
    },
    'default study config',
  );
}
