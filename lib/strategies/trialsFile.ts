// The search's trials file: one JSON line per finished trial. Each append rewrites the whole
// file atomically (temporary file, fsync, rename), so a kill leaves either the old list or
// the new one and a finished trial is never lost or half-written.
import fs from 'node:fs';
import { writeFileAtomic } from '../util/atomic.ts';
import type { TrialSpec } from './search.ts';
import type { SelectionCost } from './types.ts';

/** A finished trial: its spec (less the seed, which the search fixes) and what it measured. */
export interface TrialRecord extends Omit<TrialSpec, 'seed'> {
  /** Validation mean AUROC; null when undefined (for example a split without positives). */
  valMeanAuroc: number | null;
  cost: SelectionCost;
  finishedAt: string;
}

export class TrialsFile {
  private readonly records = new Map<string, TrialRecord>();

  /** Opens `file` and loads its trials; with null the list lives in memory only (no resume). */
  constructor(readonly file: string | null) {
    if (file === null || !fs.existsSync(file)) return;
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    lines.forEach((line, i) => {
      if (line.trim() === '') return;
      let record: TrialRecord;
      try {
        record = JSON.parse(line) as TrialRecord;
      } catch (err) {
        throw new Error(`Invalid JSON on line ${i + 1} of the trials file ${file}: ${(err as Error).message}. Remove that line to re-run the trial.`);
      }
      this.records.set(record.id, record);
    });
  }

  get(id: string): TrialRecord | undefined {
    return this.records.get(id);
  }

  all(): TrialRecord[] {
    return [...this.records.values()].sort((a, b) => a.index - b.index);
  }

  get size(): number {
    return this.records.size;
  }

  append(record: TrialRecord): void {
    if (this.records.has(record.id)) throw new Error(`Trial ${record.id} is already recorded in ${this.file ?? 'the trials list'}.`);
    this.records.set(record.id, record);
    if (this.file === null) return;
    writeFileAtomic(this.file, this.all().map((r) => JSON.stringify(r)).join('\n') + '\n');
  }
}
