// clipfreeze command line. Each command lives in its own file under lib/cli/ and exports
// `register(program)`, which adds the command, its options and help text.
import { Command } from 'commander';
import { log } from '../util/log.ts';

const program = new Command();
program
  .name('clipfreeze')
  .description('Choose which CLIP layers to freeze, train or cut off for a medical imaging domain, and measure the cost.')
  .option('--backend <name>', 'TF.js backend: node-gpu, node, wasm or cpu (default: fastest present; env CLIPFREEZE_BACKEND)')
  .showHelpAfterError();

// Commands register themselves here, one import line each.
import { register as registerInfo } from './info.ts';
registerInfo(program);
import { register as registerStudy } from './study.ts';
registerStudy(program);
import { register as registerTrain } from './train.ts';
registerTrain(program);
import { register as registerMetrics } from './metrics.ts';
registerMetrics(program);
import { register as registerEmbed } from './embed.ts';
registerEmbed(program);
import { register as registerZeroShot } from './zeroShot.ts';
registerZeroShot(program);
import { register as registerWorker } from './worker.ts';
registerWorker(program);
import { register as registerReport } from './report.ts';
registerReport(program);
import { register as registerSelect } from './select.ts';
registerSelect(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  log.error((err as Error).message);
  if (process.env.CLIPFREEZE_DEBUG) console.error(err);
  process.exitCode = 1;
}
