// `clipfreeze report`: renders the HTML report from the complete runs under a runs directory.
import type { Command } from 'commander';
import { writeReport } from '../report/render.ts';

export function register(program: Command): void {
  program
    .command('report')
    .description('Render one self-contained HTML report (Plotly and data inlined, opens offline) from the complete runs in a runs directory.')
    .option('--runs <dir>', 'runs directory written by clipfreeze study', 'runs')
    .option('--out <file>', 'HTML file to write', 'reports/report.html')
    .action((opts: { runs: string; out: string }) => {
      const model = writeReport(opts.runs, opts.out);
      process.stdout.write(`${JSON.stringify({ out: opts.out, methods: model.methods, runs: model.runs.length, skipped: model.skipped.length, figures: model.figures.map((f) => f.id), pretrained: model.pretrained.pretrained })}\n`);
    });
}
