// `clipfreeze study`: runs every method of a study config for every seed, then writes the report.
import type { Command } from 'commander';
import { initBackend } from '../util/backend.ts';
import { loadStudyConfig, type StudyConfig } from '../study/config.ts';
import { defaultInputs, defaultStudyConfig } from '../study/defaultConfig.ts';
import { runStudy } from '../study/study.ts';

interface StudyFlags {
  config?: string;
  default?: boolean;
  runs?: string;
  report?: string;
}

export function register(program: Command): void {
  program
    .command('study')
    .description(
      'Run every method of a study (zero-shot, full fine-tuning, truncation, fixed plans, strategies) for every seed, ' +
        'skipping runs already complete, then write the HTML report.',
    )
    .option('--config <file>', 'study config (JSON)')
    .option('--default', 'run the default study with inputs from ./data/ or CLIPFREEZE_CHECKPOINT, CLIPFREEZE_DATA, CLIPFREEZE_SOURCE_DATA')
    .option('--runs <dir>', 'folder of run records (overrides the config)')
    .option('--report <file>', 'HTML report to write (overrides the config)')
    .action(async (flags: StudyFlags, cmd: Command) => {
      if (!flags.config && !flags.default) {
        throw new Error('Pass --config FILE (a study config) or --default (the default study on ./data/).');
      }
      await initBackend(cmd.optsWithGlobals().backend);
      let config: StudyConfig = flags.config ? loadStudyConfig(flags.config) : defaultStudyConfig(defaultInputs());
      if (flags.runs) config = { ...config, runs: flags.runs };
      if (flags.report) config = { ...config, report: flags.report };
      const result = await runStudy(config);
      process.stdout.write(`${JSON.stringify({ study: result.studyDir, report: result.report, runs: result.runs.length })}\n`);
    });
}
