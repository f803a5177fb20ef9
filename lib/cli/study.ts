// `clipfreeze study`: runs every method of a study config for every seed, then writes the report.
import path from 'node:path';
import type { Command } from 'commander';
import { initBackend } from '../util/backend.ts';
import { loadStudyConfig, type StudyConfig } from '../study/config.ts';
import { defaultInputs, defaultStudyConfig } from '../study/defaultConfig.ts';
import { runStudy } from '../study/study.ts';
import { addExecutorOptions, createExecutor } from '../study/executors.ts';

interface StudyFlags {
  config?: string;
  default?: boolean;
  runs?: string;
  report?: string;
  executor: string;
  redis?: string;
  queue: string;
  attempts?: number;
}

export function register(program: Command): void {
  const command = program
    .command('study')
    .description(
      'Run every method of a study (zero-shot, full fine-tuning, truncation, fixed plans, strategies) for every seed, ' +
        'skipping runs already complete, then write the HTML report.',
    )
    .option('--config <file>', 'study config (JSON)')
    .option('--default', 'run the default study with inputs from ./data/ or CLIPFREEZE_CHECKPOINT, CLIPFREEZE_DATA, CLIPFREEZE_SOURCE_DATA')
    .option('--runs <dir>', 'folder of run records (overrides the config)')
    .option('--report <file>', 'HTML report to write (overrides the config)');
  addExecutorOptions(command).action(async (flags: StudyFlags, cmd: Command) => {
    if (!flags.config && !flags.default) {
      throw new Error('Pass --config FILE (a study config) or --default (the default study on ./data/).');
    }
    await initBackend(cmd.optsWithGlobals().backend);
    let config: StudyConfig = flags.config ? loadStudyConfig(flags.config) : defaultStudyConfig(defaultInputs());
    if (flags.runs) config = { ...config, runs: flags.runs };
    if (flags.report) config = { ...config, report: flags.report };

    // Zero-shot and training trials go to the queue's workers with --executor bullmq.
    const executor = createExecutor(flags.executor, { runsDir: path.resolve(config.runs), ...flags });
    try {
      const result = await runStudy(config, { executor });
      process.stdout.write(`${JSON.stringify({ study: result.studyDir, report: result.report, runs: result.runs.length })}\n`);
    } finally {
      await executor.close();
    }
  });
}
