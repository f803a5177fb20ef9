// The ChestX-ray14 label file, in both published forms:
//
//   Data_Entry_2017.csv        NIH's original release. Two header names contain a comma
//                              ("OriginalImage[Width,Height]"), and every line ends with a comma,
//                              so the header and the rows end with an empty column.
//   Data_Entry_2017_v2020.csv  NIH's 2020 relabel, the same columns without the trailing comma.
//
// Only 'Image Index', 'Finding Labels' and 'Patient ID' are used; columns are found by name,
// so both forms read the same. 'Finding Labels' lists findings separated by '|', or 'No Finding'.
import fs from 'node:fs';
import path from 'node:path';
import { parse } from 'csv-parse/sync';
import { moduleLog } from '../util/log.ts';

const logger = moduleLog('labels');

/** The 14 ChestX-ray14 findings in the standard order (Wang et al., CVPR 2017). */
export const CHESTXRAY14_FINDINGS = [
  'Atelectasis',
  'Cardiomegaly',
  'Effusion',
  'Infiltration',
  'Mass',
  'Nodule',
  'Pneumonia',
  'Pneumothorax',
  'Consolidation',
  'Edema',
  'Emphysema',
  'Fibrosis',
  'Pleural_Thickening',
  'Hernia',
] as const;

export const NO_FINDING = 'No Finding';

/** Label file names in the order they are looked for in a dataset folder. */
export const LABEL_FILE_NAMES = ['Data_Entry_2017_v2020.csv', 'Data_Entry_2017.csv'];

export interface LabelRow {
  image: string;
  patient: string;
  /** 0/1 per finding in CHESTXRAY14_FINDINGS order. */
  labels: number[];
  /** Line in the label file, for messages. */
  line: number;
}

export interface LabelTable {
  file: string;
  /** '2017' when the header ends with an empty column, else '2020'. */
  form: '2017' | '2020';
  rows: Map<string, LabelRow>;
  /** Rows skipped because their field count was wrong, a field was empty or the image repeated. */
  malformed: number;
  /** Rows skipped because they named a finding outside the 14. */
  unknownFinding: number;
}

export interface LabelFileOptions {
  /**
   * Keep only these image names. For the 621-image sample of the 112,120-row file this took
   * 0.05 s instead of 0.5 s (one run, 2-core machine). Skip counts then cover the kept rows only.
   */
  keep?: Set<string>;
  /** Throw on the first malformed row or unknown finding instead of skipping it. Default false. */
  strict?: boolean;
}

const REQUIRED_COLUMNS = { image: 'Image Index', findings: 'Finding Labels', patient: 'Patient ID' } as const;

/** Maximum number of skipped rows named in the log. Later ones are only counted. */
const MAX_LOGGED_SKIPS = 5;

// Parsed tables by file, size and modification time, so that a process parses a file once.
const cache = new Map<string, { table: LabelTable; keep: Set<string> | null }>();

/** Finds the label file in a ChestX-ray14 folder, or throws naming the names it looked for. */
export function findLabelFile(dir: string): string {
  for (const name of LABEL_FILE_NAMES) {
    const file = path.join(dir, name);
    if (fs.existsSync(file)) return file;
  }
  throw new Error(`No ChestX-ray14 label file in ${dir}: expected ${LABEL_FILE_NAMES.join(' or ')}. Download it from the NIH ChestX-ray14 site or pass its path as labelFile.`);
}

/** Reads a label file once per process. Later calls with the same or a smaller `keep` reuse the result. */
export function readLabelFile(file: string, options: LabelFileOptions = {}): LabelTable {
  const stat = fs.statSync(file);
  const cacheKey = `${path.resolve(file)}:${stat.size}:${stat.mtimeMs}:${options.strict ? 'strict' : 'lenient'}`;
  const cached = cache.get(cacheKey);
  if (cached && (cached.keep === null || (options.keep && isSubset(options.keep, cached.keep)))) {
    return options.keep ? restrict(cached.table, options.keep) : cached.table;
  }

  const table = parseLabelText(fs.readFileSync(file, 'utf8'), file, options);
  cache.set(cacheKey, { table, keep: options.keep ?? null });
  return table;
}

/** Parses label file text. `file` names the source in messages. */
export function parseLabelText(text: string, file: string, options: LabelFileOptions = {}): LabelTable {
  const started = Date.now();
  const records = parseRecords(text, file, options.keep);
  if (records.length === 0) throw new Error(`Label file ${file} is empty.`);

  const header = records[0].record.map((h) => h.trim());
  const form = header[header.length - 1] === '' ? '2017' : '2020';
  const column = (name: string) => {
    const index = header.indexOf(name);
    if (index < 0) throw new Error(`Label file ${file} has no '${name}' column. Its header is: ${header.join(', ')}`);
    return index;
  };
  const imageColumn = column(REQUIRED_COLUMNS.image);
  const findingsColumn = column(REQUIRED_COLUMNS.findings);
  const patientColumn = column(REQUIRED_COLUMNS.patient);

  const table: LabelTable = { file, form, rows: new Map(), malformed: 0, unknownFinding: 0 };
  const findingIndex = new Map<string, number>(CHESTXRAY14_FINDINGS.map((f, i) => [f, i]));
  const skip = (kind: 'malformed' | 'unknownFinding', line: number, reason: string) => {
    if (options.strict) throw new Error(`Label file ${file} line ${line}: ${reason}. Fix or remove the row, or open the dataset with strictLabels off to skip it.`);
    table[kind]++;
    if (table.malformed + table.unknownFinding <= MAX_LOGGED_SKIPS) logger.warn(`Skipping label file ${file} line ${line}: ${reason}`);
  };

  for (const { record, line } of records.slice(1)) {
    if (options.keep && !options.keep.has((record[imageColumn] ?? '').trim())) continue;

    // A row may differ from the header only by a trailing empty column.
    const fields = record.length === header.length + 1 && record[record.length - 1].trim() === '' ? record.slice(0, -1) : record;
    if (fields.length !== header.length && !(form === '2017' && fields.length === header.length - 1)) {
      skip('malformed', line, `expected ${header.length} fields, found ${record.length}`);
      continue;
    }

    const image = fields[imageColumn].trim();
    const patient = fields[patientColumn].trim();
    const findingText = fields[findingsColumn].trim();
    if (!image || !patient || !findingText) {
      skip('malformed', line, `empty '${!image ? REQUIRED_COLUMNS.image : !patient ? REQUIRED_COLUMNS.patient : REQUIRED_COLUMNS.findings}'`);
      continue;
    }
    if (table.rows.has(image)) {
      skip('malformed', line, `image ${image} repeats line ${table.rows.get(image)!.line}`);
      continue;
    }

    // 'No Finding' alone means all zero. Otherwise every name must be one of the 14.
    const labels = new Array<number>(CHESTXRAY14_FINDINGS.length).fill(0);
    let unknown: string | null = null;
    if (findingText !== NO_FINDING) {
      for (const name of findingText.split('|').map((s) => s.trim())) {
        const index = findingIndex.get(name);
        if (index === undefined) {
          unknown = name;
          break;
        }
        labels[index] = 1;
      }
    }
    if (unknown !== null) {
      skip('unknownFinding', line, `unknown finding '${unknown}' in '${findingText}' (known: ${CHESTXRAY14_FINDINGS.join(', ')}, or '${NO_FINDING}' alone)`);
      continue;
    }

    table.rows.set(image, { image, patient, labels, line });
  }

  const skipped = table.malformed + table.unknownFinding;
  if (skipped > 0) {
    logger.warn(`Label file ${file}: skipped ${table.malformed} malformed row(s) and ${table.unknownFinding} row(s) with an unknown finding.`);
  }
  logger.debug(`Read ${table.rows.size} label rows from ${file} (${form} form) in ${Date.now() - started} ms`);
  return table;
}

/**
 * Parses CSV text into records with their line numbers, keeping the header and, when `keep` is
 * given, the rows whose first field is in it.
 *
 * Text without a quote character cannot have a line break inside a field, so every line is one
 * record. Then lines are filtered before parsing, which is faster than parsing 112,120 rows, and
 * a record's line number is its line's. Otherwise the parser reports line numbers itself (slower).
 */
function parseRecords(text: string, file: string, keep?: Set<string>): Array<{ record: string[]; line: number }> {
  try {
    if (text.includes('"')) {
      const parsed = parse(text, { info: true, relax_column_count: true, skip_empty_lines: true, bom: true }) as unknown as Array<{ record: string[]; info: { lines: number } }>;
      return parsed.map(({ record, info }) => ({ record, line: info.lines }));
    }

    const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
    const filterByImage = keep !== undefined && lines[0].split(',')[0].trim() === REQUIRED_COLUMNS.image;
    const kept: string[] = [];
    const lineNumbers: number[] = [];
    lines.forEach((line, i) => {
      if (line.trim() === '') return;
      if (i > 0 && filterByImage) {
        const comma = line.indexOf(',');
        if (!keep.has((comma < 0 ? line : line.slice(0, comma)).trim())) return;
      }
      kept.push(line);
      lineNumbers.push(i + 1);
    });
    const parsed = parse(kept.join('\n'), { relax_column_count: true }) as string[][];
    return parsed.map((record, k) => ({ record, line: lineNumbers[k] }));
  } catch (err) {
    throw new Error(`Invalid CSV in label file ${file}: ${describeCsvError(err as Error & { code?: string }, text)} Fix or remove that row.`);
  }
}

/**
 * Describes a csv-parse error. An unclosed quote makes the parser read to the end of the file,
 * so its message names the last line. The first line with an odd number of quotes is where the
 * quote opened, because no field of the label file spans lines.
 */
function describeCsvError(err: Error & { code?: string }, text: string): string {
  if (err.code !== 'CSV_QUOTE_NOT_CLOSED') return `${err.message}.`;

  const lines = text.split(/\r?\n/);
  const index = lines.findIndex((line) => (line.match(/"/g)?.length ?? 0) % 2 === 1);
  if (index < 0) return `${err.message}.`;
  return `a double quote opened on line ${index + 1} is never closed (line ${index + 1}: ${JSON.stringify(lines[index].slice(0, 80))}).`;
}

function isSubset(a: Set<string>, b: Set<string>): boolean {
  for (const x of a) if (!b.has(x)) return false;
  return true;
}

function restrict(table: LabelTable, keep: Set<string>): LabelTable {
  const rows = new Map<string, LabelRow>();
  for (const name of keep) {
    const row = table.rows.get(name);
    if (row) rows.set(name, row);
  }
  return { ...table, rows };
}
