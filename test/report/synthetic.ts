// Writes synthetic run folders with every run file, so the report can be tested before real
// studies exist: zero-shot, full fine-tuning, a truncation and two strategies, each over two seeds.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RunRecord } from '../../lib/runs/record.ts';

export const FINDINGS = ['Atelectasis', 'Cardiomegaly', 'Effusion', 'Infiltration', 'Mass', 'Hernia'];
export const SEEDS = [0, 1];
export const VISION_LAYERS = 4;
/** environment.json's backend as lib/util/backend.ts describes it. */
export const BACKEND = { name: 'wasm', tfBackend: 'wasm', reason: 'fastest present; unavailable: node (not installed)' };

export interface SyntheticOptions {
  /** Checkpoint path written into every config (default: a fixture path, so the report warns). */
  checkpoint?: string;
  /** Extra methods with hostile names, to test escaping. */
  extraMethods?: string[];
  pretrained?: boolean;
  /** Methods to write (default: all five) and seeds (default: 0 and 1). */
  methods?: string[];
  seeds?: number[];
}

function units(): string[] {
  const names = ['vision.embed'];
  for (let i = 0; i < VISION_LAYERS; i++) names.push(`vision.block.${i}`);
  names.push('vision.head', 'head');
  return names;
}

/** Writes the runs into a new temporary directory and returns its path. */
export function writeSyntheticRuns(options: SyntheticOptions = {}): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipfreeze-report-'));
  const checkpoint = options.checkpoint ?? '/data/fixtures/clip-mini/hf-format';
  const methods = [...(options.methods ?? ['zero-shot', 'full', 'truncate-2', 'similarity-cka', 'gradient-rgn']), ...(options.extraMethods ?? [])];

  methods.forEach((method, m) => {
    for (const seed of options.seeds ?? SEEDS) {
      const kind = method === 'zero-shot' ? 'zero-shot' : 'train';
      const base = {
        kind,
        method,
        seed,
        checkpoint,
        checkpointSha256: 'ab'.repeat(32),
        dataset: 'chestxray14',
        data: '/data/chestxray14-sample',
        ...(options.pretrained === undefined ? {} : { pretrained: options.pretrained }),
      };
      const quality = 0.55 + 0.05 * m + 0.01 * seed;

      // Strategies first write a selection run whose plan the training run uses.
      let plan = { train: ['vision.block.2', 'vision.block.3', 'vision.head', 'head'], truncate: method === 'truncate-2' ? 2 : 0 };
      let planFrom: string | null = null;
      if (method.includes('-cka') || method.includes('-rgn')) {
        const select = new RunRecord(dir, `select-${method}-${seed}`);
        planFrom = select.dir;
        const scores: Record<string, number> = {};
        units().forEach((u, i) => (scores[u] = method.includes('cka') ? 1 - i / 10 + seed / 100 : i * 3 + seed));
        plan = { train: method.includes('cka') ? ['vision.block.0', 'vision.block.1', 'head'] : ['vision.block.3', 'vision.head', 'head'], truncate: 0 };
        // As the select run writes it: `method` is the strategy's measure, not the study's label.
        select.writeJson('config.json', { ...base, kind: 'select', method: method.split('-')[1] });
        select.writeJson('selection.json', {
          strategy: method.split('-')[0],
          plan,
          scores,
          cost: { wallSeconds: 3 + seed, flops: 2e9, imagesSeen: 64 },
          details: {},
        });
        select.markComplete('select', ['config.json', 'selection.json']);
      }

      const run = new RunRecord(dir, `${kind}-${method}-${seed}`);
      run.writeJson('config.json', kind === 'train' ? { ...base, plan, planFrom } : base);
      run.writeJson('environment.json', { backend: BACKEND, node: process.version, packages: { '@tensorflow/tfjs': '4.22.0' }, gitCommit: 'deadbeef' });

      const perFinding: Record<string, unknown> = {};
      FINDINGS.forEach((f, i) => {
        const auroc = f === 'Hernia' ? null : Math.min(0.99, quality + 0.02 * i);
        perFinding[f] = { auroc, ci: auroc === null ? null : [auroc - 0.05, auroc + 0.05], ap: auroc, positives: f === 'Hernia' ? 0 : 5, negatives: 40 };
      });
      run.writeJson('metrics.json', {
        split: 'test',
        n: 45,
        findings: FINDINGS,
        perFinding,
        meanAuroc: quality + 0.04,
        meanAurocCi: [quality - 0.01, quality + 0.09],
        definedFindings: FINDINGS.length - 1,
        bootstrap: { samples: 200, seed, unit: 'patient' },
      });

      const files = ['config.json', 'environment.json', 'metrics.json'];
      if (kind === 'train') {
        run.writeJson('cost.json', {
          trainSeconds: 10 * (m + 1),
          evalSeconds: 2,
          imagesPerSecond: 30,
          flops: 1e10 * (m + 1),
          trainableParams: 1000 * (m + 1),
          totalParams: 100000,
          peakTensorBytes: 1e8 * (m + 1),
          // One process ran every method, so RSS is the same high-water mark everywhere.
          peakRssBytes: 5e8,
          backend: 'wasm',
          activationCacheHits: method === 'gradient-rgn' && seed === 0 ? 12 : 0,
        });
        run.writeJson('history.json', {
          epochs: [1, 2, 3].map((epoch) => ({ epoch, trainLoss: 0.7 / epoch, valMeanAuroc: quality + 0.01 * epoch, lr: 1e-4, seconds: 3 })),
        });
        run.writeJson('forgetting.json', {
          sets: { 'cifar10-test': { before: 0.5, after: 0.5 - 0.02 * m, drop: 0.02 * m, n: 100 } },
          meanDrop: 0.02 * m + 0.001 * seed,
        });
        files.push('cost.json', 'history.json', 'forgetting.json');
      }
      run.markComplete(kind, files);
    }
  });

  // An unfinished run (no complete.json) that the report must ignore.
  const crashed = new RunRecord(dir, 'train-crashed-0');
  crashed.writeJson('config.json', { kind: 'train', method: 'crashed-method', seed: 0, checkpoint });

  return dir;
}
