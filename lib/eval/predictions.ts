// predictions.csv: one row per image with its patient, split, 0/1 label and score per finding.
//
//   image,patient,split,label:Atelectasis,...,label:Hernia,score:Atelectasis,...,score:Hernia
//
// Scores are written with the shortest decimal that reads back to the same double, so a file
// round-trips exactly. Other tools can write this format and be scored with `clipfreeze metrics`.
import fs from 'node:fs';
import { parse } from 'csv-parse/sync';
import { stringify } from 'csv-stringify/sync';
import { SPLITS, type Split } from '../data/dataset.ts';
import { writeFileAtomic } from '../util/atomic.ts';
import { moduleLog } from '../util/log.ts';

const logger = moduleLog('predictions');

export interface PredictionRow {
  image: string;
  patient: string;
  split: Split;
  /** 0/1 per finding, in the order of `Predictions.findings`. */
  labels: number[];
  /** Score per finding (a probability or any monotone score). */
  scores: number[];
}

export interface Predictions {
  findings: string[];
  rows: PredictionRow[];
}

const LABEL_PREFIX = 'label:';
const SCORE_PREFIX = 'score:';
const ID_COLUMNS = ['image', 'patient', 'split'] as const;

/** Formats predictions as CSV text with a header row. */
export function formatPredictions(predictions: Predictions): string {
  const { findings, rows } = predictions;
  const header = [...ID_COLUMNS, ...findings.map((f) => LABEL_PREFIX + f), ...findings.map((f) => SCORE_PREFIX + f)];
  const records = rows.map((row, r) => {
    if (row.labels.length !== findings.length || row.scores.length !== findings.length) {
      throw new Error(
        `Prediction row ${r + 1} (${row.image}) has ${row.labels.length} labels and ${row.scores.length} scores; expected ${findings.length} of each.`,
      );
    }
    return [row.image, row.patient, row.split, ...row.labels.map(String), ...row.scores.map(String)];
  });
  return stringify([header, ...records]);
}

/** Writes predictions.csv atomically. */
export function writePredictions(file: string, predictions: Predictions): void {
  writeFileAtomic(file, formatPredictions(predictions));
}

/** Reads and validates predictions.csv. Errors name the file, line and column. */
export function readPredictions(file: string): Predictions {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`Failed to read predictions file ${file}: ${(err as Error).message}`);
  }
  return parsePredictions(text, file);
}

/** Parses and validates predictions CSV text. `source` names the input in errors. */
export function parsePredictions(text: string, source = 'predictions.csv'): Predictions {
  let records: Array<{ record: string[]; info: { lines: number } }>;
  try {
    records = parse(text, { info: true, skip_empty_lines: true, relax_column_count: true, bom: true }) as unknown as typeof records;
  } catch (err) {
    throw new Error(`Invalid CSV in ${source}: ${(err as Error).message}`);
  }
  if (records.length === 0) throw new Error(`${source} is empty: expected a header row starting with image,patient,split.`);

  const header = records[0].record;
  const columns = resolveColumns(header, source);
  const { findings, labelColumn, scoreColumn } = columns;

  const rows: PredictionRow[] = [];
  const seen = new Map<string, number>();
  for (const { record, info } of records.slice(1)) {
    const line = info.lines;
    const where = (column: string) => `${source} line ${line}, column '${column}'`;
    if (record.length !== header.length) {
      throw new Error(`${source} line ${line} has ${record.length} fields; the header has ${header.length}.`);
    }

    const image = record[columns.image].trim();
    const patient = record[columns.patient].trim();
    const split = record[columns.split].trim();
    if (!image) throw new Error(`Missing image name at ${where('image')}.`);
    if (!patient) throw new Error(`Missing patient at ${where('patient')}.`);
    if (!(SPLITS as readonly string[]).includes(split)) {
      throw new Error(`Invalid split '${split}' at ${where('split')}: expected one of ${SPLITS.join(', ')}.`);
    }
    const previous = seen.get(image);
    if (previous !== undefined) throw new Error(`Duplicate image '${image}' at ${where('image')}. It is also on line ${previous}.`);
    seen.set(image, line);

    const labels = findings.map((f, k) => {
      const value = record[labelColumn[k]].trim();
      if (value !== '0' && value !== '1') {
        throw new Error(`Invalid label '${value}' at ${where(LABEL_PREFIX + f)}: labels must be 0 or 1.`);
      }
      return Number(value);
    });
    const scores = findings.map((f, k) => {
      const value = record[scoreColumn[k]].trim();
      const score = value === '' ? NaN : Number(value);
      if (!Number.isFinite(score)) {
        throw new Error(`Invalid score '${value}' at ${where(SCORE_PREFIX + f)}: scores must be finite numbers.`);
      }
      return score;
    });

    rows.push({ image, patient, split: split as Split, labels, scores });
  }
  return { findings, rows };
}

interface ColumnIndex {
  image: number;
  patient: number;
  split: number;
  findings: string[];
  labelColumn: number[];
  scoreColumn: number[];
}

/** Finds the id columns and pairs every label:<F> column with its score:<F> column. */
function resolveColumns(header: string[], source: string): ColumnIndex {
  const names = header.map((h) => h.trim());
  const indexOf = (name: string) => names.indexOf(name);
  const duplicate = names.find((name, c) => names.indexOf(name) !== c);
  if (duplicate !== undefined) throw new Error(`${source} has the column '${duplicate}' twice.`);

  for (const name of ID_COLUMNS) {
    if (indexOf(name) < 0) throw new Error(`${source} has no '${name}' column. Expected header: image,patient,split,label:<Finding>...,score:<Finding>...`);
  }

  const findings: string[] = [];
  const labelColumn: number[] = [];
  const scoreColumn: number[] = [];
  const ignored: string[] = [];
  names.forEach((name, c) => {
    if (name.startsWith(LABEL_PREFIX)) {
      const finding = name.slice(LABEL_PREFIX.length);
      const score = indexOf(SCORE_PREFIX + finding);
      if (score < 0) throw new Error(`${source} has '${name}' but no '${SCORE_PREFIX}${finding}' column.`);
      findings.push(finding);
      labelColumn.push(c);
      scoreColumn.push(score);
    } else if (name.startsWith(SCORE_PREFIX)) {
      if (indexOf(LABEL_PREFIX + name.slice(SCORE_PREFIX.length)) < 0) {
        throw new Error(`${source} has '${name}' but no '${LABEL_PREFIX}${name.slice(SCORE_PREFIX.length)}' column.`);
      }
    } else if (!(ID_COLUMNS as readonly string[]).includes(name)) {
      ignored.push(name);
    }
  });

  if (findings.length === 0) throw new Error(`${source} has no label:<Finding> columns.`);
  if (ignored.length) logger.warn(`${source}: ignoring ${ignored.length} unknown column(s): ${ignored.join(', ')}`);
  return { image: indexOf('image'), patient: indexOf('patient'), split: indexOf('split'), findings, labelColumn, scoreColumn };
}
