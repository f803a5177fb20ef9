// Runs the synthetic search with a trials file and a slow evaluator, so a test can kill it midway.
import { runSearch } from '../../../lib/strategies/search.ts';
import { syntheticOutcome, syntheticSettings } from './synthetic.ts';

const trialsFile = process.argv[2];
await runSearch(
  syntheticSettings({
    trialsFile,
    evaluate: async (trial) => {
      await new Promise((resolve) => setTimeout(resolve, 40));
      return syntheticOutcome(trial);
    },
  }),
);
