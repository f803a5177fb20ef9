// The zero-shot baseline as a recorded run: CLIP with no training, scored by prompt pairs.
//
//   dataset split -> preprocessed pixels -> image features -> zero-shot probabilities
//   -> predictions.csv, metrics.json (AUROC with patient bootstrap CIs), config.json,
//      environment.json, dataset.json, run.log, and complete.json last.
//
// The run id is a hash of everything that changes the result (checkpoint hash, data folder,
// split, limit, seed, prompt file content, bootstrap), so repeating a finished run returns
// the recorded one instead of computing it again. The runtime of the text and image features
// (onnxruntime-node or TF.js, within 1e-4) is not part of the id.
import fs from 'node:fs';
import path from 'node:path';
import { createImageFeatureEncoder, type ImageFeatureEncoder } from '../clip/imageFeatureEncoder.ts';
import { ClipModel } from '../clip/model.ts';
import { preprocessConfigFrom, preprocessKey } from '../clip/preprocess.ts';
import { ClipTokenizer } from '../clip/tokenizer.ts';
import { loadBatch } from '../data/batches.ts';
import type { Split } from '../data/dataset.ts';
import { openDataset, type DatasetName } from '../data/registry.ts';
import { acquireRunLock } from '../runs/lock.ts';
import { describeEnvironment, RunRecord, runIdFor } from '../runs/record.ts';
import { initBackend } from '../util/backend.ts';
import { sha256File } from '../util/hash.ts';
import { moduleLog } from '../util/log.ts';
import { createProgress } from '../util/progress.ts';
import { checkBootstrapSamples } from './bootstrap.ts';
import { DEFAULT_BOOTSTRAP_SAMPLES, evaluatePredictions, type MetricsJson } from './metrics.ts';
import { writePredictions, type PredictionRow } from './predictions.ts';
import { sourceZeroShotAccuracy, summariseForgetting, type SourceAccuracy } from './forgetting.ts';
import { encodeTextsOnnx } from './textFeatures.ts';
import { buildZeroShotClassifier, loadPrompts, zeroShotPromptTexts, zeroShotScores } from './zeroShot.ts';

const logger = moduleLog('zero-shot-run');

export interface ZeroShotRunOptions {
  /** Checkpoint folder or .safetensors file. */
  checkpoint: string;
  /** Target dataset folder. */
  data: string;
  split: Split;
  dataset?: DatasetName;
  /** Maximum images of the split, drawn by the dataset's seeded stratified sample. */
  limit?: number;
  /** Folder that contains the run records. Default `runs`. */
  runsDir?: string;
  /** Prompt file replacing the dataset's default prompts. */
  promptsFile?: string;
  /** Bootstrap replicates for the confidence intervals. Default 1000; 0 turns them off. */
  bootstrap?: number;
  /** Seed of the split sample and the bootstrap. Default 0. */
  seed?: number;
  /** Images per forward pass. Default 16. */
  batchSize?: number;
  /** Method label recorded in config.json. Default 'zero-shot'. */
  method?: string;
  /** Further options passed to the dataset opener. */
  datasetOptions?: Record<string, unknown>;
  backend?: string;
  /** Recompute even when a complete record with the same config exists. */
  force?: boolean;
  /**
   * Source-domain sets for forgetting.json. A zero-shot model is the pretrained model, so its
   * accuracy is measured once and recorded as both before and after (drop 0), which puts the
   * baseline on the same forgetting axis as the fine-tuned runs.
   */
  source?: Array<{ name: string; path: string; limitPerClass: number }>;
}

export interface ZeroShotRunResult {
  runId: string;
  runDir: string;
  metrics: MetricsJson;
  /** True when a complete record already existed and was returned unchanged. */
  reused: boolean;
}

/** Runs (or reuses) a zero-shot evaluation and records it. */
export async function runZeroShot(options: ZeroShotRunOptions): Promise<ZeroShotRunResult> {
  const datasetName = options.dataset ?? 'chestxray14';
  const seed = options.seed ?? 0;
  const bootstrap = options.bootstrap ?? DEFAULT_BOOTSTRAP_SAMPLES;
  const batchSize = options.batchSize ?? 16;
  const runsDir = options.runsDir ?? 'runs';
  if (!['train', 'val', 'test'].includes(options.split)) throw new Error(`Invalid split '${options.split}': expected train, val or test.`);
  if (options.limit !== undefined && !(Number.isInteger(options.limit) && options.limit > 0)) {
    throw new Error(`Invalid limit ${options.limit}: expected a positive integer number of images.`);
  }
  if (!(Number.isInteger(batchSize) && batchSize > 0)) throw new Error(`Invalid batch size ${batchSize}: expected a positive integer.`);
  checkBootstrapSamples(bootstrap);

  // 1. Backend, model and dataset.
  const backend = await initBackend(options.backend);
  const { model, checkpoint } = await ClipModel.load(options.checkpoint);
  let encoder: ImageFeatureEncoder | undefined;
  let releaseLock: (() => void) | undefined;
  try {
    const tokenizer = ClipTokenizer.fromDir(checkpoint.dir);
    const limitOptions = options.limit === undefined ? {} : { limit: { [options.split]: options.limit }, sampleSeed: seed };
    const dataset = await openDataset(datasetName, options.data, { ...options.datasetOptions, ...limitOptions });
    const promptsFile = path.resolve(options.promptsFile ?? dataset.promptsFile);
    const prompts = loadPrompts(promptsFile, dataset.findings);
    const preprocess = preprocessConfigFrom(model.config);
    const samples = dataset.samples(options.split);
    if (samples.length === 0) throw new Error(`The ${options.split} split of ${options.data} has no images; check the folder and the split lists.`);

    // 2. Config and run id. Only what changes the result goes into the id.
    const config = {
      kind: 'zero-shot',
      method: options.method ?? 'zero-shot',
      seed,
      checkpoint: path.resolve(options.checkpoint),
      checkpointSha256: checkpoint.sha256,
      dataset: datasetName,
      data: path.resolve(options.data),
      split: options.split,
      limit: options.limit ?? null,
      datasetOptions: options.datasetOptions ?? {},
      prompts: promptsFile,
      promptsSha256: sha256File(promptsFile),
      preprocess: preprocessKey(preprocess),
      bootstrap,
      ...(options.source?.length ? { source: options.source.map((set) => ({ ...set, path: path.resolve(set.path) })) } : {}),
    };
    const runId = runIdFor('zero-shot', config);
    const record = new RunRecord(runsDir, runId);
    if (record.isComplete() && !options.force) {
      const metrics = record.readJson<MetricsJson>('metrics.json');
      logger.info(`Zero-shot run ${runId} is already complete in ${record.dir}; mean AUROC ${formatAuroc(metrics.meanAuroc)}. Pass force to recompute.`);
      return { runId, runDir: record.dir, metrics, reused: true };
    }
    releaseLock = acquireRunLock(record.dir, runId);
    if (record.isComplete()) fs.rmSync(record.path('complete.json'));
    record.writeJson('config.json', { ...config, batchSize, runsDir: path.resolve(runsDir) });
    record.appendLog(`zero-shot run ${runId}: ${samples.length} ${options.split} images of ${options.data}, checkpoint ${checkpoint.dir} (${checkpoint.format}), backend ${backend.name}`);
    logger.info(`Zero-shot run ${runId}: ${samples.length} ${options.split} images, batch ${batchSize}, backend ${backend.name}`);

    // 3. Text side: one positive and one negative embedding per finding, the prompts encoded on
    // onnxruntime-node when it is installed.
    const promptFeatures = await encodeTextsOnnx(model, tokenizer, zeroShotPromptTexts(prompts, dataset.findings), 'Zero-shot prompt encoding');
    const classifier = buildZeroShotClassifier(model, tokenizer, prompts, dataset.findings, promptFeatures ?? undefined);
    record.appendLog(`prompts ${promptsFile}: ${prompts.positiveTemplates.length} positive and ${prompts.negativeTemplates.length} negative templates, logit scale ${classifier.logitScale}`);

    // 4. Image side, batch by batch, on onnxruntime-node when it is installed.
    encoder = await createImageFeatureEncoder(model, { pass: 'Zero-shot image encoding' });
    record.appendLog(`image features on ${encoder.runtime}`);
    const rows: PredictionRow[] = [];
    const started = Date.now();
    const progress = createProgress(`zero-shot ${options.split}`, samples.length);
    try {
      for (let start = 0; start < samples.length; start += batchSize) {
        const chunk = samples.slice(start, start + batchSize);
        const { pixels, kept } = await loadBatch(dataset, chunk, preprocess, { progressFrom: Number.POSITIVE_INFINITY });
        if (kept.length > 0) {
          const scores = zeroShotScores(classifier, await encoder.encode(pixels, kept.length), kept.length);
          const count = dataset.findings.length;
          kept.forEach((sample, i) => {
            rows.push({ image: sample.id, patient: sample.patient, split: sample.split, labels: sample.labels, scores: Array.from(scores.subarray(i * count, (i + 1) * count)) });
          });
        }
        progress.tick(chunk.length, { skipped: start + chunk.length - rows.length });
      }
    } finally {
      progress.stop();
    }
    const seconds = (Date.now() - started) / 1000;
    const failed = samples.length - rows.length;
    if (rows.length === 0) throw new Error(`None of the ${samples.length} images of the ${options.split} split could be loaded; see the warnings above for the files.`);
    record.appendLog(`scored ${rows.length} images in ${seconds.toFixed(1)} s (${(rows.length / seconds).toFixed(2)} images/s); ${failed} failed to load and were skipped`);

    // 5. Predictions, metrics and the rest of the record; complete.json last.
    const predictions = { findings: dataset.findings, rows };
    writePredictions(record.path('predictions.csv'), predictions);
    const metrics = evaluatePredictions(predictions, { bootstrap, seed });
    record.writeJson('metrics.json', metrics);
    record.writeJson('dataset.json', dataset.describe());
    record.writeJson(
      'environment.json',
      describeEnvironment({ checkpoint: checkpoint.dir, checkpointFormat: checkpoint.format, checkpointFiles: checkpoint.files, checkpointSha256: checkpoint.sha256, evalSeconds: seconds }),
    );
    for (const finding of dataset.findings) {
      const m = metrics.perFinding[finding];
      record.appendLog(`${finding}: AUROC ${formatAuroc(m.auroc)} (${m.positives} positive, ${m.negatives} negative)`);
    }
    const summary = `mean AUROC ${formatAuroc(metrics.meanAuroc)} over ${metrics.definedFindings} findings${metrics.meanAurocCi ? `, 95% CI [${metrics.meanAurocCi.map((v) => v.toFixed(4)).join(', ')}]` : ''}, ${rows.length} images`;
    record.appendLog(summary);
    const files = ['config.json', 'predictions.csv', 'metrics.json', 'dataset.json', 'environment.json', 'run.log'];

    // 6. Source-domain accuracy of the pretrained model, for the forgetting axis of the report.
    if (options.source?.length) {
      const accuracies: SourceAccuracy[] = [];
      for (const set of options.source) {
        const result = await sourceZeroShotAccuracy({ imageModel: model, imageEncoder: encoder, textModel: model, tokenizer, set: set.path, name: set.name, preprocess, limitPerClass: set.limitPerClass, seed });
        accuracies.push({ ...result, name: set.name });
      }
      record.writeJson('forgetting.json', summariseForgetting(accuracies, accuracies));
      files.push('forgetting.json');
    }
    record.markComplete('zero-shot', files);
    logger.info(`Zero-shot ${options.split}: ${summary}. Record: ${record.dir}`);
    return { runId, runDir: record.dir, metrics, reused: false };
  } finally {
    releaseLock?.();
    await encoder?.dispose();
    model.dispose();
  }
}

function formatAuroc(value: number | null): string {
  return value === null ? 'undefined' : value.toFixed(4);
}
