// The study: every method for every seed on one target dataset, then the report.
//
//   1. Selection: each 'select' method runs its strategy (similarity, gradient or search) and
//      records the chosen plan in a select run.
//   2. Trials: zero-shot evaluations and training runs (fixed plans, truncation, and the plans
//      chosen in step 1) go to the trial executor: in this process, or on BullMQ workers.
//   3. The study record lists every run by method and seed; the report is rendered from the runs.
//
// Every run is keyed by its config, so a killed study run again skips what is complete and
// resumes what is not.
import path from 'node:path';
import { DEFAULT_METHODS, runSelect, type SelectConfig } from '../strategies/selectRun.ts';
import type { StrategyName } from '../strategies/types.ts';
import { writeReport } from '../report/render.ts';
import { describeEnvironment, RunRecord, runIdFor } from '../runs/record.ts';
import { moduleLog } from '../util/log.ts';
import { createProgress } from '../util/progress.ts';
import type { MethodConfig, StudyConfig } from './config.ts';
import { checkpointSha256, dataFingerprint } from './fingerprint.ts';
import { LocalExecutor } from './localExecutor.ts';
import { trialId, type TrialExecutor, type TrialResult, type TrialSpec } from './trial.ts';

const logger = moduleLog('study');

export interface StudyRunEntry {
  method: string;
  kind: MethodConfig['kind'];
  seed: number;
  /** Run folder names under the runs directory: the select run (if any) and the evaluated run. */
  selectRunId: string | null;
  runId: string;
  testMeanAuroc: number | null;
}

export interface StudyResult {
  studyDir: string;
  report: string;
  runs: StudyRunEntry[];
}

export interface StudyOptions {
  /** Executor of the zero-shot and training trials (default: this process). */
  executor?: TrialExecutor;
}

/** Default search budget of a study: a few short trials (epochs of the limited training split). */
const STUDY_SEARCH_BUDGET = { unit: 'epochs', total: 4, minBudget: 0.5, maxBudget: 1, eta: 2 } as const;

export async function runStudy(config: StudyConfig, options: StudyOptions = {}): Promise<StudyResult> {
  const runsDir = path.resolve(config.runs);
  const executor = options.executor ?? new LocalExecutor(runsDir);
  const checkpointHash = checkpointSha256(config.checkpoint);
  const dataHash = dataFingerprint(config.data);

  // Empty dataset options are left out of every id, so studies recorded before the option existed
  // keep their study record and trial ids.
  const { datasetOptions, ...withoutDatasetOptions } = config;
  const studyIdentity = { ...withoutDatasetOptions, ...(Object.keys(datasetOptions).length > 0 ? { datasetOptions } : {}), runs: undefined, report: undefined };
  const studyRecord = new RunRecord(runsDir, runIdFor('study', studyIdentity, config.name));
  studyRecord.writeJson('config.json', { kind: 'study', method: 'study', ...config, checkpointSha256: checkpointHash, dataFingerprint: dataHash });
  studyRecord.writeJson('environment.json', describeEnvironment({ checkpointSha256: checkpointHash }));
  studyRecord.appendLog(`start: ${config.methods.length} methods x ${config.seeds.length} seeds, executor ${executor.name}`);

  const selectMethods = config.methods.filter((m) => m.kind === 'select');
  const totalSteps = config.seeds.length * (config.methods.length + selectMethods.length);
  logger.info(
    `Study '${config.name}': ${config.methods.map((m) => m.name).join(', ')} x seeds ${config.seeds.join(', ')} ` +
      `(${totalSteps} runs) on ${config.dataset} at ${config.data}; runs in ${runsDir}`,
  );
  const progress = createProgress('study', totalSteps);

  // 1. Selection runs, in this process: each reads the model and data once. A search sends its
  //    trials to a remote executor when the study has one. The local executor is not passed,
  //    because it would only wrap the search's own in-process trials.
  const selectRunIds = new Map<string, { runId: string; runDir: string }>();
  for (const seed of config.seeds) {
    for (const method of selectMethods) {
      if (method.kind !== 'select') continue;
      const selectConfig = selectConfigFor(config, method, seed);
      const result = await runSelect(selectConfig, executor.name === 'local' ? {} : { executor });
      selectRunIds.set(key(method.name, seed), { runId: result.runId, runDir: result.runDir });
      studyRecord.appendLog(`select ${method.name} seed ${seed}: ${result.runId}`);
      progress.tick(1, { last: `${method.name}/${seed}` });
    }
  }

  // 2. Zero-shot and training trials.
  const specs: TrialSpec[] = [];
  const owners: Array<{ method: MethodConfig; seed: number }> = [];
  for (const seed of config.seeds) {
    for (const method of config.methods) {
      const trialConfig = trialConfigFor(config, method, seed, selectRunIds.get(key(method.name, seed))?.runDir ?? null);
      const kind = method.kind === 'zero-shot' ? 'zero-shot' : 'train';
      specs.push({ id: trialId(kind, trialConfig), kind, config: trialConfig, checkpointSha256: checkpointHash, dataFingerprint: dataHash });
      owners.push({ method, seed });
    }
  }
  let results: TrialResult[];
  try {
    results = await executor.runAll(specs, (p) => {
      if (p.fraction >= 1) progress.tick(1, { last: p.message.slice(0, 40) });
    });
  } finally {
    progress.stop();
  }

  // 3. The study record and the report.
  const entries: StudyRunEntry[] = results.map((result, i) => ({
    method: owners[i].method.name,
    kind: owners[i].method.kind,
    seed: owners[i].seed,
    selectRunId: selectRunIds.get(key(owners[i].method.name, owners[i].seed))?.runId ?? null,
    runId: result.runId,
    testMeanAuroc: result.summary.testMeanAuroc,
  }));
  studyRecord.writeJson('study.json', { name: config.name, runs: entries });
  studyRecord.appendLog(`finished: ${entries.length} runs`);
  studyRecord.markComplete('study', ['config.json', 'environment.json', 'study.json', 'run.log']);

  const reportFile = path.resolve(config.report);
  writeReport(runsDir, reportFile);
  logTable(entries);
  logger.info(`Report written to ${reportFile}`);
  return { studyDir: studyRecord.dir, report: reportFile, runs: entries };
}

function key(method: string, seed: number): string {
  return `${method}\u0000${seed}`;
}

function selectConfigFor(config: StudyConfig, method: Extract<MethodConfig, { kind: 'select' }>, seed: number): SelectConfig {
  const { method: strategyMethod, units, budget, ...settings } = (method.settings ?? {}) as Record<string, unknown>;
  return {
    strategy: method.strategy as StrategyName,
    method: (strategyMethod as string | undefined) ?? DEFAULT_METHODS[method.strategy as StrategyName],
    checkpoint: config.checkpoint,
    dataset: config.dataset,
    data: config.data,
    datasetOptions: config.datasetOptions,
    source: config.source[0]?.path ?? null,
    units: (units as number | undefined) ?? null,
    seed,
    limit: config.limit,
    budget: method.strategy === 'search' ? ((budget as SelectConfig['budget']) ?? { ...STUDY_SEARCH_BUDGET }) : null,
    // Search trials train with the study's training settings unless the method overrides them.
    settings: method.strategy === 'search' ? { train: config.train, ...settings } : settings,
    runs: config.runs,
  };
}

function trialConfigFor(config: StudyConfig, method: MethodConfig, seed: number, selectRunDir: string | null): Record<string, unknown> {
  const datasetOptions = Object.keys(config.datasetOptions).length > 0 ? { datasetOptions: config.datasetOptions } : {};
  if (method.kind === 'zero-shot') {
    return {
      checkpoint: config.checkpoint,
      data: config.data,
      dataset: config.dataset,
      ...datasetOptions,
      split: 'test',
      ...(config.limit.test !== null ? { limit: config.limit.test } : {}),
      bootstrap: config.bootstrap,
      seed,
      method: method.name,
      source: config.source,
    };
  }
  const base = {
    ...config.train,
    method: method.name,
    checkpoint: config.checkpoint,
    data: config.data,
    dataset: config.dataset,
    ...datasetOptions,
    limit: config.limit,
    seed,
    bootstrap: config.bootstrap,
    source: config.source,
    runs: config.runs,
  };
  if (method.kind === 'train') return { ...base, trainUnits: method.plan, truncate: method.truncate ?? 0 };
  if (!selectRunDir) throw new Error(`Internal error: no select run recorded for method '${method.name}', seed ${seed}.`);
  return { ...base, planFrom: selectRunDir };
}

function logTable(entries: StudyRunEntry[]): void {
  const lines = entries.map((e) => `  ${e.method.padEnd(20)} seed ${String(e.seed).padEnd(3)} test mean AUROC ${e.testMeanAuroc === null ? 'undefined' : e.testMeanAuroc.toFixed(4)}  ${e.runId}`);
  logger.info(`Study results:\n${lines.join('\n')}`);
}
