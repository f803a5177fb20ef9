// Runs trials one after another in this process. The default executor: on a 2-core CPU the
// TF.js backend already uses the cores, so running trials side by side would not be faster.
import { runTrial, type TrialRunner } from './runTrial.ts';
import type { TrialExecutor, TrialProgress, TrialResult, TrialSpec } from './trial.ts';

export class LocalExecutor implements TrialExecutor {
  readonly name = 'local';

  constructor(
    private readonly runsDir: string,
    private readonly runner: TrialRunner = runTrial,
  ) {}

  async runAll(specs: TrialSpec[], onProgress?: (p: TrialProgress) => void): Promise<TrialResult[]> {
    const results: TrialResult[] = [];
    for (const spec of specs) {
      results.push(await this.runner(spec, { runsDir: this.runsDir, onProgress }));
    }
    return results;
  }

  async close(): Promise<void> {}
}
