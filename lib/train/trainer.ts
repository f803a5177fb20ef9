// Fine-tuning of CLIP's image tower under a freeze plan, with a linear task head.
//
// trainRun(config) reads top to bottom like one training script:
//   1. load the checkpoint, resolve the plan and the run record (skip a complete run)
//   2. open the target data, build the task head (zero-shot init), measure forgetting "before"
//   3. set up the split forward path, the activation cache, AdamW and the schedule
//   4. resume from the last saved epoch, if any
//   5. per epoch: shuffled batches of micro-batches with gradient accumulation, clipping,
//      one AdamW update per batch; validation mean AUROC; early stopping; atomic state
//   6. restore the best weights; test predictions and metrics (unless evaluateTest is false);
//      forgetting "after"; cost
//   7. complete.json last
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { ClipModel } from '../clip/model.ts';
import type { Checkpoint } from '../clip/checkpoint.ts';
import { preprocessConfigFrom, preprocessKey, type PreprocessConfig } from '../clip/preprocess.ts';
import { ClipTokenizer } from '../clip/tokenizer.ts';
import type { Sample, Split, TargetDataset } from '../data/dataset.ts';
import { loadBatch } from '../data/batches.ts';
import { openImageFolder, sampleImageFolder, type ImageFolderSet } from '../data/imageFolder.ts';
import { openDataset } from '../data/registry.ts';
import { DEFAULT_SOURCE_TEMPLATES, sourceZeroShotAccuracy, summariseForgetting, type SourceAccuracy } from '../eval/forgetting.ts';
import { evaluatePredictions, type MetricsJson } from '../eval/metrics.ts';
import { writePredictions, type Predictions } from '../eval/predictions.ts';
import { encodeTextsOnnx } from '../eval/textFeatures.ts';
import { buildZeroShotClassifier, linearHeadInit, loadPrompts, zeroShotPromptTexts } from '../eval/zeroShot.ts';
import { countPlanParams, formatParamTable } from '../freeze/paramCount.ts';
import { formatPlan, parsePlan, type FreezePlan } from '../freeze/plan.ts';
import { decaysWeight, HEAD_UNIT, layerUnits } from '../freeze/units.ts';
import { acquireRunLock } from '../runs/lock.ts';
import { describeEnvironment, RunRecord, runIdFor } from '../runs/record.ts';
import { currentBackend } from '../util/backend.ts';
import { readJson } from '../util/atomic.ts';
import { moduleLog } from '../util/log.ts';
import { createProgress } from '../util/progress.ts';
import { createRng, shuffleInPlace } from '../util/rng.ts';
import { ActivationCache } from './activationCache.ts';
import { AdamW, type AdamWParam } from './adamw.ts';
import { loadTrainState, saveTrainState, stateDir, type EpochRecord, type TrainStateMeta } from './checkpointState.ts';
import { GradientBuffer } from './gradientBuffer.ts';
import { availableCores, chooseTrainThreads, GradientWorkers } from './gradientWorkers.ts';
import { checkInputPaths, identityOf, parseTrainConfig, type SourceSet, type TrainConfig } from './config.ts';
import { CostMeter, trainFlopsPerImage, type CostJson } from './cost.ts';
import { ForgettingBeforeCache } from './forgettingCache.ts';
import { markFrozenVariables } from './frozenVariables.ts';
import { createOnnxPrefix, type OnnxPrefix } from './onnxPrefix.ts';
import { TaskHead } from './head.ts';
import { runPrefix, runSuffix, splitPoint, type SplitPoint } from './imagePath.ts';
import { positiveWeights } from './loss.ts';
import { batchGradients } from './microBatch.ts';
import { layerDecayScales, learningRateAt } from './schedule.ts';

const logger = moduleLog('train');

export interface TrainProgress {
  runId: string;
  epoch: number;
  step: number;
  totalSteps: number;
  loss: number;
  imagesPerSecond: number;
  /** Fraction of optimiser updates done, in [0, 1]. */
  fraction: number;
  message: string;
}

/** Callbacks for instrumentation and tests; they may read or modify the model between steps. */
export interface TrainHooks {
  afterStep?(context: { step: number; epoch: number; model: ClipModel; head: TaskHead }): void;
  /** Called with the final model (best weights restored) before it is disposed. */
  beforeDispose?(context: { model: ClipModel; head: TaskHead; plan: FreezePlan }): void;
}

export interface TrainRunOptions {
  /** Folder of run records; defaults to config.runs. */
  runsDir?: string;
  onProgress?: (progress: TrainProgress) => void;
  /** Aborting stops the run at the next step; finished epochs stay saved for a resume. */
  signal?: AbortSignal;
  hooks?: TrainHooks;
  /**
   * A model already loaded from config.checkpoint, reused across runs (e.g. by a search).
   * Its trained parameters are restored when the run ends, so the caller's copy is unchanged.
   */
  model?: { model: ClipModel; checkpoint: Checkpoint };
  /** Run id the config must map to (a resume of a recorded run); a mismatch is an error. */
  expectedRunId?: string;
}

export interface TrainRunResult {
  runDir: string;
  runId: string;
  /** Test metrics (metrics.json); null when the config turns test evaluation off (evaluateTest false). */
  metrics: MetricsJson | null;
  /** Validation mean AUROC of the best epoch. */
  valMeanAuroc: number | null;
  cost: CostJson;
}

/** Raised when the loss or the gradient norm is NaN or infinite. */
export class TrainingDivergedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrainingDivergedError';
  }
}

/** Raised when `signal` aborts a run. */
export class TrainingAbortedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrainingAbortedError';
  }
}

const TRAIN_FILES = ['config.json', 'environment.json', 'dataset.json', 'history.json', 'cost.json'];
const TEST_FILES = ['metrics.json', 'predictions.csv'];

/**
 * Trains one run and records it. The same config always maps to the same run id, so a run whose
 * record is complete is returned without training, and an incomplete one resumes from its last epoch.
 */
export async function trainRun(rawConfig: TrainConfig | Record<string, unknown>, options: TrainRunOptions = {}): Promise<TrainRunResult> {
  const config = parseTrainConfig(rawConfig);
  checkInputPaths(config);
  const runsDir = options.runsDir ?? config.runs;

  // 1. Model, plan and run record.
  const loaded = options.model ?? (await ClipModel.load(config.checkpoint));
  const { model, checkpoint } = loaded;
  const planSpec = resolvePlanSpec(config);
  const plan = parsePlan(planSpec.spec, model.config, planSpec.truncate);
  const method = config.method || formatPlan(plan).replace(/[^A-Za-z0-9._-]+/g, '_');
  const identity = { ...identityOf(config), method, plan, checkpointSha256: checkpoint.sha256 };
  const runId = runIdFor('train', identity, method);
  if (options.expectedRunId && options.expectedRunId !== runId) {
    if (!options.model) model.dispose();
    throw new Error(
      `Cannot resume ${options.expectedRunId}: its recorded config now maps to run ${runId}, because the checkpoint file or the config defaults changed. Start a new run instead.`,
    );
  }
  const record = new RunRecord(runsDir, runId);

  if (record.isComplete()) {
    logger.info(`Run ${runId} is complete; reusing ${record.dir}`);
    if (!options.model) model.dispose();
    return completedResult(record);
  }

  // One process at a time trains a run: a second one would write the same files.
  let releaseLock: () => void;
  try {
    releaseLock = acquireRunLock(record.dir, runId);
  } catch (error) {
    if (!options.model) model.dispose();
    throw error;
  }

  // The caller's model must come back unchanged, so keep its trained parameters.
  let originalWeights: ReturnType<typeof snapshotTrainedWeights> | null = null;
  let restoreTrainableFlags = () => {};
  try {
    originalWeights = options.model ? snapshotTrainedWeights(model, plan) : null;
    restoreTrainableFlags = markFrozenVariables(model, plan);
    return await trainAndRecord({ config, plan, method, identity, record, model, checkpoint, options });
  } finally {
    releaseLock();
    restoreTrainableFlags();
    if (originalWeights) {
      model.setWeights(originalWeights);
    } else if (!options.model) {
      model.dispose();
    }
  }
}

interface RunContext {
  config: TrainConfig;
  plan: FreezePlan;
  method: string;
  identity: Record<string, unknown>;
  record: RunRecord;
  model: ClipModel;
  checkpoint: Checkpoint;
  options: TrainRunOptions;
}

async function trainAndRecord(ctx: RunContext): Promise<TrainRunResult> {
  const { config, plan, record, model, checkpoint, options } = ctx;
  const backend = currentBackend()?.name ?? tf.getBackend();
  record.writeJson('config.json', {
    kind: 'train',
    ...config,
    method: ctx.method,
    seed: config.seed,
    checkpoint: config.checkpoint,
    checkpointSha256: checkpoint.sha256,
    dataset: config.dataset,
    plan,
    runId: record.runId,
  });
  record.writeJson('environment.json', describeEnvironment({ checkpointSha256: checkpoint.sha256 }));
  record.appendLog(`start: plan ${formatPlan(plan)}, seed ${config.seed}`);
  logger.info(`Run ${record.runId}: plan ${formatPlan(plan)}, ${record.dir}`);

  // 2. Data, task head and forgetting before fine-tuning.
  const dataset = await openDataset(config.dataset, config.data, { ...config.datasetOptions, limit: splitLimits(config) });
  const findings = dataset.findings;
  const preprocess = preprocessConfigFrom(model.config);
  const samples: Record<Split, Sample[]> = { train: dataset.samples('train'), val: dataset.samples('val'), test: dataset.samples('test') };
  const requiredSplits: Split[] = config.evaluateTest ? ['train', 'val', 'test'] : ['train', 'val'];
  for (const split of requiredSplits) {
    if (samples[split].length === 0) throw new Error(`The ${split} split of ${config.data} is empty; check the dataset folder and the 'limit' setting.`);
  }
  logger.info(`Data: ${samples.train.length} train, ${samples.val.length} val, ${samples.test.length} test images`);

  const tokenizer = ClipTokenizer.fromDir(config.checkpoint);
  const head = await buildHead(config, model, tokenizer, dataset);
  const counts = countPlanParams(plan, model.config, findings.length, (name) => model.params.get(name)?.size);
  logger.info(`Parameters per unit:\n${formatParamTable(counts)}`);

  const forgettingBefore = await measureForgettingBefore(ctx, tokenizer, preprocess);

  // 3. Forward path, activation cache, optimiser and schedule.
  const split = splitPoint(model, plan);
  const cache =
    config.activationCache && split.lastFrozen
      ? new ActivationCache(config.cacheDir ?? path.join(path.resolve(options.runsDir ?? config.runs), '.cache', 'activations'), {
          checkpointSha256: checkpoint.sha256,
          preprocessKey: preprocessKey(preprocess),
          lastFrozenUnit: split.lastFrozen,
          shape: split.outputShape,
        })
      : null;
  const onnxPrefix = await createOnnxPrefix(model, split);
  const inputs = new PrefixInputs(model, split, dataset, preprocess, cache, config.microBatchSize, onnxPrefix);

  const params = trainableParams(model, head, plan, config);
  const optimizer = new AdamW(params, { beta1: config.beta1, beta2: config.beta2, eps: config.eps, weightDecay: config.weightDecay });
  const batchesPerEpoch = Math.ceil(samples.train.length / config.batchSize);
  const totalSteps = Math.min(Math.ceil(config.epochs * batchesPerEpoch), config.maxSteps ?? Infinity);
  const epochs = Math.ceil(totalSteps / batchesPerEpoch);
  const schedule = { baseLr: config.lr, warmupSteps: config.warmupSteps, totalSteps, minLrRatio: config.minLrRatio };
  if (config.warmupSteps >= totalSteps) {
    logger.warn(`warmupSteps ${config.warmupSteps} is not below the run's ${totalSteps} optimiser updates, so the learning rate never reaches lr ${config.lr}.`);
  }
  const posWeight = config.posWeight ? positiveWeights(samples.train.map((s) => s.labels), findings.length) : undefined;
  const threads = chooseTrainThreads(config.trainThreads, {
    backend,
    cores: availableCores(),
    microBatchesPerStep: Math.ceil(Math.min(config.batchSize, samples.train.length) / config.microBatchSize),
    runFlops: trainFlopsPerImage(model.config, plan, findings.length) * Math.min(totalSteps * config.batchSize, epochs * samples.train.length),
  });
  logger.info(`Gradients on ${threads.threads} thread${threads.threads > 1 ? 's' : ''} (${threads.reason})`);

  // 4. Resume from the last finished epoch.
  let meta: TrainStateMeta = {
    epoch: 0,
    step: 0,
    optimizerStep: 0,
    bestValMeanAuroc: null,
    bestEpoch: 0,
    epochsWithoutImprovement: 0,
    finished: false,
    history: [],
    nextOrder: epochOrder(samples.train, config.seed, 0),
    trainSeconds: 0,
    evalSeconds: 0,
    imagesSeen: 0,
    evalImages: 0,
    activationCacheHits: 0,
    activationCacheMisses: 0,
  };
  let best = readWeights(params);
  const saved = loadTrainState(record.dir);
  if (saved) {
    meta = saved.meta;
    writeWeights(params, saved.tensors.weights);
    best = Object.keys(saved.tensors.best).length ? saved.tensors.best : readWeights(params);
    if (!meta.finished) optimizer.setState({ step: meta.optimizerStep, m: plainData(saved.tensors.m), v: plainData(saved.tensors.v) });
    logger.info(`Resuming ${record.runId} after epoch ${meta.epoch} (step ${meta.step} of ${totalSteps})`);
    record.appendLog(`resume after epoch ${meta.epoch}, step ${meta.step}`);
  }
  const meter = new CostMeter(meta);
  if (cache) {
    // Lookups of the epochs finished before a resume count towards this run's totals.
    cache.hits = meta.activationCacheHits ?? 0;
    cache.misses = meta.activationCacheMisses ?? 0;
  }

  // 5. Epochs. With several threads, workers compute some micro-batches (gradientWorkers.ts).
  const trainIds = new Map(samples.train.map((s) => [s.id, s]));
  const needsTraining = !meta.finished && meta.epoch < epochs && meta.step < totalSteps;
  const workers = needsTraining && threads.threads > 1 ? await GradientWorkers.start(threads.threads - 1, { model, head, split, params, posWeight, backend }) : null;
  try {
    while (!meta.finished && meta.epoch < epochs && meta.step < totalSteps) {
      const epoch = meta.epoch;
      const order = meta.nextOrder.map((id) => trainIds.get(id)).filter((s): s is Sample => s !== undefined);
      const stepsThisEpoch = Math.min(batchesPerEpoch, totalSteps - meta.step);
      const progress = createProgress(`epoch ${epoch + 1}/${epochs}`, stepsThisEpoch);
      const epochStarted = performance.now();
      let lossSum = 0;
      let lossImages = 0;
      let lr = 0;

      await meter.time('train', async () => {
        for (let b = 0; b < stepsThisEpoch; b++) {
          if (options.signal?.aborted) {
            throw new TrainingAbortedError(`Run ${record.runId} aborted at step ${meta.step}; finished epochs are saved in ${stateDir(record.dir)}. Run it again to resume.`);
          }
          const batch = order.slice(b * config.batchSize, (b + 1) * config.batchSize);
          lr = learningRateAt(meta.step, schedule);
          const stepStarted = performance.now();

          // Gradient accumulation: each micro-batch's mean loss is weighted by its share of
          // the batch, so the summed gradient is the gradient of the batch's mean loss. With
          // workers, they and the main thread take turns at the micro-batches.
          const grads = new GradientBuffer();
          const loaders = [];
          for (let start = 0; start < batch.length; start += config.microBatchSize) {
            const slice = batch.slice(start, start + config.microBatchSize);
            loaders.push(async () => {
              const micro = await inputs.load(slice);
              return micro.kept.length > 0 ? micro : null;
            });
          }
          const microLosses = await batchGradients(loaders, batch.length, { model, head, split, params, posWeight, workers, afterForward: () => meter.sampleMemory() }, grads);
          let batchLoss = 0;
          let batchImages = 0;
          for (const { loss, images } of microLosses) {
            if (!Number.isFinite(loss)) throw divergedError(record, meta, `loss is ${loss}`, epoch);
            batchLoss += loss * images;
            batchImages += images;
          }
          if (batchImages === 0) continue;

          // Gradients were scaled by the batch's listed size; rescale when images were skipped.
          if (batchImages !== batch.length) grads.scale(batch.length / batchImages);
          const norm = grads.clipByGlobalNorm(config.clipGradNorm);
          if (!Number.isFinite(norm)) {
            throw divergedError(record, meta, `gradient norm is ${norm}`, epoch);
          }
          optimizer.applyGradients(grads.entries(), lr);
          workers?.syncWeights(params);
          grads.clear();
          meter.sampleMemory();

          meta.step += 1;
          meter.imagesSeen += batchImages;
          lossSum += batchLoss;
          lossImages += batchImages;
          const imagesPerSecond = batchImages / ((performance.now() - stepStarted) / 1000);
          const loss = batchLoss / batchImages;
          progress.tick(1, { step: meta.step, loss, lr, 'img/s': imagesPerSecond });
          options.onProgress?.({
            runId: record.runId,
            epoch: epoch + 1,
            step: meta.step,
            totalSteps,
            loss,
            imagesPerSecond,
            fraction: meta.step / totalSteps,
            message: `epoch ${epoch + 1}/${epochs} step ${meta.step}/${totalSteps} loss ${loss.toFixed(4)}`,
          });
          options.hooks?.afterStep?.({ step: meta.step, epoch: epoch + 1, model, head });
        }
      }).finally(() => progress.stop());

      // Validation, early stopping and the best weights.
      const val = await meter.time('eval', () => predictSplit(inputs, model, head, split, samples.val, findings, meter));
      const valMeanAuroc = evaluatePredictions(val, { bootstrap: 0 }).meanAuroc;
      const improved = valMeanAuroc !== null && (meta.bestValMeanAuroc === null || valMeanAuroc > meta.bestValMeanAuroc);
      if (improved || meta.bestEpoch === 0) {
        best = readWeights(params);
        meta.bestEpoch = epoch + 1;
        meta.bestValMeanAuroc = valMeanAuroc;
        meta.epochsWithoutImprovement = 0;
      } else {
        meta.epochsWithoutImprovement += 1;
      }

      const entry: EpochRecord = {
        epoch: epoch + 1,
        trainLoss: lossImages ? lossSum / lossImages : NaN,
        valMeanAuroc,
        lr,
        seconds: (performance.now() - epochStarted) / 1000,
        step: meta.step,
      };
      meta.history.push(entry);
      meta.epoch = epoch + 1;
      meta.optimizerStep = optimizer.step;
      meta.nextOrder = epochOrder(samples.train, config.seed, meta.epoch);
      meta.trainSeconds = meter.trainSeconds;
      meta.evalSeconds = meter.evalSeconds;
      meta.imagesSeen = meter.imagesSeen;
      meta.evalImages = meter.evalImages;
      meta.activationCacheHits = cache?.hits ?? 0;
      meta.activationCacheMisses = cache?.misses ?? 0;
      const patienceSpent = config.patience > 0 && meta.epochsWithoutImprovement >= config.patience;
      meta.finished = meta.epoch >= epochs || meta.step >= totalSteps || patienceSpent;
      logger.info(
        `epoch ${entry.epoch}/${epochs}: train loss ${entry.trainLoss.toFixed(4)}, val mean AUROC ${formatAuroc(valMeanAuroc)}` +
          `${improved ? ' (best)' : ''}, ${entry.seconds.toFixed(1)} s`,
      );
      if (patienceSpent) logger.info(`Early stopping: no better validation mean AUROC for ${config.patience} epochs; best is epoch ${meta.bestEpoch}.`);

      const optimizerState = optimizer.getState();
      saveTrainState(record.dir, meta, { weights: readWeights(params), m: shaped(optimizerState.m, params), v: shaped(optimizerState.v, params), best });
      record.writeJson('history.json', { epochs: meta.history });
      record.appendLog(`epoch ${entry.epoch} saved: loss ${entry.trainLoss}, val mean AUROC ${valMeanAuroc}`);
    }
  } finally {
    await workers?.close();
  }
  optimizer.dispose();

  // 6. Best weights, test evaluation, forgetting and cost.
  writeWeights(params, best);
  const files = [...TRAIN_FILES];
  let metrics: MetricsJson | null = null;
  if (config.evaluateTest) {
    const test = await meter.time('eval', () => predictSplit(inputs, model, head, split, samples.test, findings, meter));
    writePredictions(record.path('predictions.csv'), test);
    metrics = evaluatePredictions(test, { bootstrap: config.bootstrap, seed: config.seed });
    record.writeJson('metrics.json', metrics);
    files.push(...TEST_FILES);
  } else {
    logger.info('Test evaluation is off (evaluateTest false): no metrics.json or predictions.csv.');
  }
  await onnxPrefix?.dispose();
  record.writeJson('history.json', { epochs: meta.history, bestEpoch: meta.bestEpoch, bestValMeanAuroc: meta.bestValMeanAuroc });
  // The dataset summary, with the missing and corrupt images skipped, which the log may show only once per process.
  record.writeJson('dataset.json', dataset.describe());

  if (forgettingBefore) {
    const after = await measureForgetting(ctx, tokenizer, preprocess, plan.truncate, 'after fine-tuning');
    record.writeJson('forgetting.json', summariseForgetting(forgettingBefore, after));
    files.push('forgetting.json');
  }

  const cost = meter.summary({
    config: model.config,
    plan,
    findings: findings.length,
    trainableParams: counts.trainable,
    totalParams: counts.total,
    backend,
  });
  cost.trainThreads = threads.threads;
  if (cache) {
    cost.activationCacheHits = cache.hits;
    cost.activationCacheMisses = cache.misses;
  }
  record.writeJson('cost.json', cost);
  if (cache) logger.info(`Activation cache: ${cache.hits} hits, ${cache.misses} misses (${cache.dir})`);
  options.hooks?.beforeDispose?.({ model, head, plan });
  head.dispose();

  // Keep only the best weights; the optimiser moments are not needed once the run is done.
  saveTrainState(record.dir, { ...meta, finished: true }, { weights: best, m: {}, v: {}, best: {} });

  // 7. complete.json last.
  record.markComplete('train', files);
  record.appendLog(metrics ? `complete: test mean AUROC ${metrics.meanAuroc}` : 'complete: no test evaluation');
  logger.info(`Run ${record.runId} complete: test mean AUROC ${metrics ? formatAuroc(metrics.meanAuroc) : 'not evaluated'}, val ${formatAuroc(meta.bestValMeanAuroc)} (epoch ${meta.bestEpoch})`);
  return { runDir: record.dir, runId: record.runId, metrics, valMeanAuroc: meta.bestValMeanAuroc, cost };
}

/** Resolves the plan spec and truncation, from --plan-from's selection.json when given. */
function resolvePlanSpec(config: TrainConfig): { spec: string | Partial<FreezePlan>; truncate: number } {
  if (!config.planFrom) return { spec: config.trainUnits, truncate: config.truncate };
  const file = fs.existsSync(config.planFrom) && fs.statSync(config.planFrom).isDirectory() ? path.join(config.planFrom, 'selection.json') : config.planFrom;
  if (!fs.existsSync(file)) throw new Error(`No selection.json at ${file}: --plan-from expects the folder of a finished 'select' run.`);
  const selection = readJson<{ plan?: Partial<FreezePlan> }>(file);
  if (!selection.plan) throw new Error(`${file} has no 'plan'; it is not the output of 'clipfreeze select'.`);
  return { spec: selection.plan, truncate: selection.plan.truncate ?? 0 };
}

function splitLimits(config: TrainConfig): Partial<Record<Split, number>> {
  const limits: Partial<Record<Split, number>> = {};
  for (const split of ['train', 'val', 'test'] as const) {
    const limit = config.limit[split];
    if (limit !== null) limits[split] = limit;
  }
  return limits;
}

/** Returns the training split's sample ids in the order epoch `epoch` visits them. */
export function epochOrder(samples: Sample[], seed: number, epoch: number): string[] {
  // One generator per epoch, so the order of any epoch is known without replaying earlier ones.
  const rng = createRng((seed * 1_000_003 + epoch * 7_919) >>> 0);
  return shuffleInPlace(samples.map((s) => s.id), rng);
}

async function buildHead(config: TrainConfig, model: ClipModel, tokenizer: ClipTokenizer, dataset: TargetDataset): Promise<TaskHead> {
  if (config.headInit === 'random') return TaskHead.random(model.config.embedDim, dataset.findings.length, config.seed);
  const prompts = loadPrompts(dataset.promptsFile, dataset.findings);
  // The prompts' text features come from onnxruntime when it is installed (null otherwise).
  const textFeatures = await encodeTextsOnnx(model, tokenizer, zeroShotPromptTexts(prompts, dataset.findings), 'Task head prompt encoding');
  const classifier = buildZeroShotClassifier(model, tokenizer, prompts, dataset.findings, textFeatures ?? undefined);
  return TaskHead.fromZeroShot(linearHeadInit(classifier));
}

/** Lists the optimised parameters of the plan's units with their learning-rate scale and decay flag. */
export function trainableParams(model: ClipModel, head: TaskHead, plan: FreezePlan, config: TrainConfig): AdamWParam[] {
  const decayScales = config.layerDecay < 1 ? layerDecayScales(model.config, plan.truncate, config.layerDecay) : {};
  const headVariables = head.variables();
  const trained = new Set(plan.train);
  const params: AdamWParam[] = [];
  for (const unit of layerUnits(model.config, head.bias.size)) {
    if (!trained.has(unit.name)) continue;
    let lrScale = (plan.lrScale?.[unit.name] ?? 1) * (decayScales[unit.name] ?? 1);
    if (unit.name === HEAD_UNIT) lrScale *= config.headLrScale;
    for (const p of unit.params) {
      const variable = unit.name === HEAD_UNIT ? headVariables.get(p.name) : model.params.get(p.name);
      if (!variable) throw new Error(`Parameter '${p.name}' of unit '${unit.name}' is missing from the model.`);
      params.push({ name: p.name, variable, lrScale, decay: decaysWeight(p.name, p.shape) });
    }
  }
  return params;
}

function snapshotTrainedWeights(model: ClipModel, plan: FreezePlan): Map<string, { shape: number[]; data: Float32Array }> {
  const all = model.getWeights();
  const names = new Set(layerUnits(model.config).filter((u) => plan.train.includes(u.name) && u.name !== HEAD_UNIT).flatMap((u) => u.params.map((p) => p.name)));
  return new Map([...all].filter(([name]) => names.has(name)));
}

/** Copies the variables' values (stored layout) by parameter name. */
function readWeights(params: AdamWParam[]): Record<string, { shape: number[]; data: Float32Array }> {
  const out: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const p of params) out[p.name] = { shape: [...p.variable.shape], data: Float32Array.from(p.variable.dataSync() as Float32Array) };
  return out;
}

function writeWeights(params: AdamWParam[], weights: Record<string, { shape: number[]; data: Float32Array }>): void {
  for (const p of params) {
    const saved = weights[p.name];
    if (!saved) throw new Error(`Saved training state has no weights for '${p.name}'; it was written for another freeze plan.`);
    if (saved.data.length !== p.variable.size) throw new Error(`Saved weights for '${p.name}' have ${saved.data.length} values, expected ${p.variable.size}.`);
    tf.tidy(() => p.variable.assign(tf.tensor(saved.data, p.variable.shape)));
  }
}

function shaped(buffers: Record<string, Float32Array>, params: AdamWParam[]): Record<string, { shape: number[]; data: Float32Array }> {
  const out: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const p of params) out[p.name] = { shape: [...p.variable.shape], data: buffers[p.name] };
  return out;
}

function plainData(tensors: Record<string, { data: Float32Array }>): Record<string, Float32Array> {
  return Object.fromEntries(Object.entries(tensors).map(([name, t]) => [name, t.data]));
}

function divergedError(record: RunRecord, meta: TrainStateMeta, what: string, epoch: number): TrainingDivergedError {
  const last = meta.epoch > 0 ? `the state saved after epoch ${meta.epoch} in ${stateDir(record.dir)}, which is intact` : 'none (no epoch finished)';
  record.appendLog(`stopped: ${what} at step ${meta.step + 1}`);
  return new TrainingDivergedError(
    `Training diverged: ${what} at step ${meta.step + 1} (epoch ${epoch + 1}) of run ${record.runId}. ` +
      `Last good checkpoint: ${last}. Lower --lr, raise --warmup-steps or lower --clip-grad-norm, then run again: ` +
      `changed settings start a new run from the pretrained weights, and this run's record keeps its saved epochs.`,
  );
}

/** Loads prefix outputs for samples, from the activation cache or by running the frozen prefix. */
class PrefixInputs {
  constructor(
    private readonly model: ClipModel,
    private readonly split: SplitPoint,
    private readonly dataset: TargetDataset,
    private readonly preprocess: PreprocessConfig,
    private readonly cache: ActivationCache | null,
    private readonly chunk: number,
    /** Runs the prefix on onnxruntime-node instead of TF.js when set. */
    private readonly onnx: OnnxPrefix | null = null,
  ) {}

  /** Returns the prefix output [B, ...outputShape], labels [B, F] and the samples kept. */
  async load(samples: Sample[]): Promise<{ x: tf.Tensor; labels: tf.Tensor2D; kept: Sample[] }> {
    const perImage = this.split.outputShape.reduce((a, b) => a * b, 1);
    const found = new Map<string, Float32Array>();
    const missing: Sample[] = [];
    for (const sample of samples) {
      const cached = this.cache?.get(sample.id) ?? null;
      if (cached) found.set(sample.id, cached);
      else missing.push(sample);
    }

    for (let start = 0; start < missing.length; start += this.chunk) {
      const part = missing.slice(start, start + this.chunk);
      const batch = await loadBatch(this.dataset, part, this.preprocess, { progressFrom: Infinity });
      if (batch.kept.length === 0) continue;
      const size = this.preprocess.size;
      let values: Float32Array;
      if (this.onnx) {
        values = await this.onnx.run(batch.pixels, batch.kept.length);
      } else {
        const output = tf.tidy(() => runPrefix(this.model, this.split, tf.tensor4d(batch.pixels, [batch.kept.length, 3, size, size])));
        values = output.dataSync() as Float32Array;
        output.dispose();
      }
      batch.kept.forEach((sample, i) => {
        const row = values.slice(i * perImage, (i + 1) * perImage);
        found.set(sample.id, row);
        this.cache?.put(sample.id, row);
      });
    }

    const kept = samples.filter((s) => found.has(s.id));
    const data = new Float32Array(kept.length * perImage);
    kept.forEach((s, i) => data.set(found.get(s.id)!, i * perImage));
    const x = tf.tensor(data, [kept.length, ...this.split.outputShape]);
    const labels = tf.tensor2d(kept.map((s) => s.labels), [kept.length, this.dataset.findings.length]);
    return { x, labels, kept };
  }
}

/** Scores a split with the current weights (no gradients) and returns its predictions. */
async function predictSplit(
  inputs: PrefixInputs,
  model: ClipModel,
  head: TaskHead,
  split: SplitPoint,
  samples: Sample[],
  findings: string[],
  meter: CostMeter,
): Promise<Predictions> {
  const rows: Predictions['rows'] = [];
  const batchSize = 16;
  for (let start = 0; start < samples.length; start += batchSize) {
    const batch = await inputs.load(samples.slice(start, start + batchSize));
    if (batch.kept.length === 0) continue;
    const scores = tf.tidy(() => tf.sigmoid(runSuffix(model, head, split, batch.x)));
    const values = scores.dataSync() as Float32Array;
    meter.sampleMemory();
    tf.dispose([scores, batch.x, batch.labels]);
    meter.evalImages += batch.kept.length;
    batch.kept.forEach((sample, i) => {
      rows.push({
        image: sample.id,
        patient: sample.patient,
        split: sample.split,
        labels: sample.labels,
        scores: Array.from(values.slice(i * findings.length, (i + 1) * findings.length)),
      });
    });
  }
  return { findings, rows };
}

async function measureForgettingBefore(ctx: RunContext, tokenizer: ClipTokenizer, preprocess: PreprocessConfig): Promise<SourceAccuracy[] | null> {
  if (ctx.config.source.length === 0) return null;
  // Measured once per run and kept, so a resumed run compares against the pretrained model.
  if (ctx.record.has('forgetting-before.json')) return ctx.record.readJson<SourceAccuracy[]>('forgetting-before.json');
  if (fs.existsSync(path.join(stateDir(ctx.record.dir), 'state.json'))) {
    throw new Error(`Run ${ctx.record.runId} has saved training state but no forgetting-before.json; delete ${ctx.record.dir} to start it again.`);
  }

  // The pretrained model's accuracy is the same for every run with these inputs, so it is
  // cached next to the run records and measured only once per study.
  const cache = new ForgettingBeforeCache(path.join(path.resolve(ctx.options.runsDir ?? ctx.config.runs), '.cache', 'forgetting-before'));
  const before: SourceAccuracy[] = [];
  for (const set of ctx.config.source) {
    const folder = openImageFolder(set.path);
    const inputs = {
      checkpointSha256: ctx.checkpoint.sha256,
      set: folder,
      samples: sampleImageFolder(folder, set.limitPerClass, ctx.config.seed),
      limitPerClass: set.limitPerClass,
      seed: ctx.config.seed,
      templates: DEFAULT_SOURCE_TEMPLATES,
      preprocessKey: preprocessKey(preprocess),
    };
    const cached = cache.get(inputs);
    if (cached) {
      logger.info(`Forgetting before fine-tuning: ${set.name}: zero-shot top-1 ${(cached.accuracy * 100).toFixed(2)}% on ${cached.n} images, from ${cache.file(inputs)}`);
      before.push({ ...cached, name: set.name });
      continue;
    }
    const result = await measureSourceSet(ctx, tokenizer, preprocess, set, folder, 0, 'before fine-tuning');
    cache.put(inputs, result);
    before.push(result);
  }
  ctx.record.writeJson('forgetting-before.json', before);
  return before;
}

/** Measures the source-domain zero-shot top-1 of the current image tower on every source set. */
async function measureForgetting(ctx: RunContext, tokenizer: ClipTokenizer, preprocess: PreprocessConfig, truncate: number, when: string): Promise<SourceAccuracy[]> {
  const results: SourceAccuracy[] = [];
  for (const set of ctx.config.source) {
    results.push(await measureSourceSet(ctx, tokenizer, preprocess, set, openImageFolder(set.path), truncate, when));
  }
  return results;
}

/** Measures the source-domain zero-shot top-1 of the current image tower on one set, with the original text tower. */
async function measureSourceSet(
  ctx: RunContext,
  tokenizer: ClipTokenizer,
  preprocess: PreprocessConfig,
  set: SourceSet,
  folder: ImageFolderSet,
  truncate: number,
  when: string,
): Promise<SourceAccuracy> {
  logger.info(`Forgetting ${when}: ${set.name}`);
  // The plan never trains the text tower, so this model's text tower is the original one.
  const result = await sourceZeroShotAccuracy({
    imageModel: ctx.model,
    textModel: ctx.model,
    tokenizer,
    set: folder,
    name: set.name,
    preprocess,
    limitPerClass: set.limitPerClass,
    seed: ctx.config.seed,
    templates: DEFAULT_SOURCE_TEMPLATES,
    truncate,
  });
  return { ...result, name: set.name };
}

function completedResult(record: RunRecord): TrainRunResult {
  const history = record.readJson<{ bestValMeanAuroc?: number | null }>('history.json');
  return {
    runDir: record.dir,
    runId: record.runId,
    metrics: record.has('metrics.json') ? record.readJson<MetricsJson>('metrics.json') : null,
    valMeanAuroc: history.bestValMeanAuroc ?? null,
    cost: record.readJson<CostJson>('cost.json'),
  };
}

function formatAuroc(value: number | null): string {
  return value === null ? 'undefined' : value.toFixed(4);
}
