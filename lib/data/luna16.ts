// LUNA16 lung CT as a 2-D target domain: one finding, "Nodule".
//
// Scans are read from .mhd/.raw files (the LUNA16 release, named <seriesuid>.mhd) or from
// DICOM series (LIDC-IDRI, whose SeriesInstanceUID is the LUNA16 seriesuid), found anywhere
// under the dataset folder. Nodule centres and diameters come from annotations.csv (world
// coordinates in mm). When annotations_excluded.csv is present, its findings (LIDC reads that
// LUNA16 left out of annotations.csv) are kept out of negatives.
//
// Two sampling modes:
// - 'patch' (default): square patches of patchMm around each annotated nodule on every slice
//   within positiveSliceFraction of its radius from the centre (positive), and patches centred
//   on lung tissue elsewhere that touch no nodule or excluded finding (negative).
// - 'slice': whole axial slices, positive when a nodule centre is within
//   positiveSliceFraction * radius, negative when every nodule and excluded finding is more
//   than radius + negativeMarginMm away. Slices in between are ambiguous and left out.
// Pixels are HU in a lung window, mapped to 8-bit greyscale.
import fs from 'node:fs';
import path from 'node:path';
import { parse } from 'csv-parse/sync';
import type { PreprocessConfig, RawImage } from '../clip/preprocess.ts';
import { defaultPromptsFile } from '../eval/zeroShot.ts';
import { moduleLog } from '../util/log.ts';
import { createRng, randomInt, type Rng } from '../util/rng.ts';
import { assignSplits, DEFAULT_SPLIT_FRACTIONS, givenSplits, type SplitFractions, rejectUnknownOptions } from './caseSplits.ts';
import type { Sample, SkipCounts, Split, TargetDataset } from './dataset.ts';
import { SPLITS } from './dataset.ts';
import { preprocessRendered } from './renderedSample.ts';
import { type DicomSeries, findDicomFiles, groupDicomSeries, readDicomSliceHu, walkFiles } from './dicom.ts';
import { cropPatch, lungMask2d } from './lungPatch.ts';
import { limitSplits } from './sampling.ts';
import { type MetaImageHeader, readMetaImageHeader, readMetaImageSlice } from './metaimage.ts';
import { assertPatientDisjoint } from './splits.ts';
import { type Vec3, type Volume, VolumeFormatError, worldToVoxel } from './volume.ts';
import { applyRgbWindows, applyWindow, type IntensityWindow, LUNG_WINDOW } from './window.ts';

const logger = moduleLog('luna16');

export const LUNA16_FINDINGS = ['Nodule'];

// Radius given to excluded findings without a measured diameter (annotations_excluded.csv
// writes -1 for them). An estimate, chosen to cover a small nodule.
const EXCLUDED_DEFAULT_RADIUS_MM = 5;

// Lung pixels a slice needs before a negative patch may be centred on it.
const MIN_LUNG_PIXELS = 100;

export interface Luna16Options {
  /** 'patch' (default) or 'slice'. */
  mode?: 'patch' | 'slice';
  /** annotations.csv (seriesuid, coordX, coordY, coordZ, diameter_mm). Default: the first one found under the dataset folder. */
  annotationsCsv?: string;
  /** annotations_excluded.csv. Default: a file named annotations_excluded*.csv under the dataset folder, if any. */
  excludedCsv?: string;
  /** Side of a patch in mm (default 64). */
  patchMm?: number;
  /** A slice is positive when its distance to a nodule centre is at most this fraction of the radius (default 0.5). */
  positiveSliceFraction?: number;
  /** Negatives keep this distance in mm from the surface of every nodule and excluded finding (default 5). */
  negativeMarginMm?: number;
  /** Negative patches per scan in patch mode (default 10). */
  negativesPerScan?: number;
  /** Nodules smaller than this diameter in mm are treated as excluded findings (default 0). */
  minDiameterMm?: number;
  /** seriesuids.csv listing the LUNA16 scans (one seriesuid a line). Default: a file of that name under the dataset folder, if any. */
  seriesUidsCsv?: string;
  /** Intensity window in HU (default the lung window, center -600, width 1500). */
  window?: IntensityWindow;
  /** Three windows rendered as R, G and B instead of one greyscale window, e.g. [LUNG_WINDOW, MEDIASTINAL_WINDOW, BONE_WINDOW]. */
  rgbWindows?: [IntensityWindow, IntensityWindow, IntensityWindow];
  /** Split per seriesuid or patient id. Every scan must be covered. */
  splits?: Record<string, Split>;
  /** CSV "<seriesuid or patient>,<train|val|test>" with a header row; used when `splits` is not given. */
  splitFile?: string;
  /** Seeded split by patient when neither `splits` nor `splitFile` is given (default 0.6/0.2/0.2). */
  splitFractions?: SplitFractions;
  /** Seed of the split and of the negative patch positions (default 0). */
  splitSeed?: number;
  /** Maximum samples per split, one number for all splits or one per split (default: no limit). */
  limit?: number | Partial<Record<Split, number>>;
  /** Seed of the stratified sample taken when a split exceeds its limit (default 0). */
  sampleSeed?: number;
  /** Zero-shot prompt templates (default: the ones shipped with clipfreeze). */
  promptsFile?: string;
}

// Every option key, so that a misspelt key in a config is rejected instead of silently ignored.
// The Record type makes the compiler check that the list matches the interface.
const LUNA16_OPTION_KEYS = Object.keys({
  mode: true,
  annotationsCsv: true,
  excludedCsv: true,
  seriesUidsCsv: true,
  patchMm: true,
  positiveSliceFraction: true,
  negativeMarginMm: true,
  negativesPerScan: true,
  minDiameterMm: true,
  window: true,
  rgbWindows: true,
  splits: true,
  splitFile: true,
  splitFractions: true,
  splitSeed: true,
  limit: true,
  sampleSeed: true,
  promptsFile: true,
} satisfies Record<keyof Luna16Options, true>);

interface Finding {
  world: Vec3;
  radiusMm: number;
}

interface Scan {
  seriesUid: string;
  patient: string;
  geometry: Pick<Volume, 'dims' | 'spacing' | 'origin' | 'direction' | 'source'>;
  mhd?: MetaImageHeader;
  dicom?: DicomSeries;
  nodules: Finding[];
  /** Nodules and excluded findings: what a negative must stay clear of. */
  avoid: Finding[];
}

interface SampleSpec {
  scan: Scan;
  /** Slice index (for negative patches: the first slice tried). */
  k: number;
  /** Patch centre (column, row) for positive patches; undefined for slices and negative patches. */
  center?: [number, number];
  kind: 'slice' | 'nodule' | 'negative';
}

export class Luna16Dataset implements TargetDataset {
  readonly name = 'luna16';
  readonly findings = LUNA16_FINDINGS;
  readonly promptsFile: string;
  private readonly options: Required<Omit<Luna16Options, 'annotationsCsv' | 'excludedCsv' | 'seriesUidsCsv' | 'rgbWindows' | 'splits' | 'splitFile' | 'promptsFile' | 'limit'>>;
  private readonly rgbWindows: Luna16Options['rgbWindows'];
  private readonly bySplit: Record<Split, Sample[]> = { train: [], val: [], test: [] };
  private readonly specs = new Map<string, SampleSpec>();
  private readonly scans: Scan[];
  private readonly sliceCache = new Map<string, Float32Array>();
  private readonly skipCounts: SkipCounts = { missing: 0, corrupt: 0 };
  private readonly files: { annotations: string; excluded: string | null; seriesUids: string | null };
  private readonly limit: Luna16Options['limit'];

  constructor(
    readonly dir: string,
    options: Luna16Options = {},
  ) {
    rejectUnknownOptions(options, LUNA16_OPTION_KEYS, 'LUNA16');
    this.options = {
      mode: options.mode ?? 'patch',
      patchMm: options.patchMm ?? 64,
      positiveSliceFraction: options.positiveSliceFraction ?? 0.5,
      negativeMarginMm: options.negativeMarginMm ?? 5,
      negativesPerScan: options.negativesPerScan ?? 10,
      minDiameterMm: options.minDiameterMm ?? 0,
      window: options.window ?? LUNG_WINDOW,
      splitFractions: options.splitFractions ?? DEFAULT_SPLIT_FRACTIONS,
      splitSeed: options.splitSeed ?? 0,
      sampleSeed: options.sampleSeed ?? 0,
    };
    if (this.options.mode !== 'patch' && this.options.mode !== 'slice') {
      throw new Error(`Invalid LUNA16 mode "${this.options.mode}": use 'patch' or 'slice'.`);
    }
    if (!(this.options.patchMm > 0)) throw new Error(`Invalid patchMm ${this.options.patchMm}: use a patch side in mm > 0, e.g. 64.`);
    this.promptsFile = options.promptsFile ?? defaultPromptsFile('luna16');
    this.limit = options.limit;
    this.rgbWindows = options.rgbWindows;
    if (this.rgbWindows !== undefined && this.rgbWindows.length !== 3) {
      throw new Error(`Invalid rgbWindows: expected 3 windows ({center, width} in HU), got ${this.rgbWindows.length}.`);
    }

    if (!fs.existsSync(dir)) throw new Error(`LUNA16 folder not found: ${dir}. Pass the folder that contains annotations.csv and the CT scans (.mhd/.raw or DICOM series).`);
    const found = findLunaFiles(dir);
    const annotations = options.annotationsCsv ?? found.annotations;
    if (!annotations) {
      throw new Error(`No annotations.csv found under ${dir}. Put the LUNA16 annotations.csv there, or pass its path as the annotationsCsv dataset option (CLI: --dataset-options '{"annotationsCsv": "FILE"}').`);
    }
    const excluded = options.excludedCsv ?? found.excluded;
    const seriesUids = options.seriesUidsCsv ?? found.seriesUids;
    this.files = { annotations, excluded: excluded ?? null, seriesUids: seriesUids ?? null };

    this.scans = this.indexScans(found.mhd, found.dicom, seriesUids);
    if (this.scans.length === 0) throw new Error(`No LUNA16 scans (.mhd files or DICOM series) found under ${dir}.`);
    attachFindings(this.scans, readNoduleCsv(annotations), excluded ? readNoduleCsv(excluded) : new Map(), this.options.minDiameterMm);

    const splitOf = this.chooseSplits(options);
    for (const scan of this.scans) this.addSamples(scan, splitOf(scan));
    assertPatientDisjoint(SPLITS.flatMap((split) => this.bySplit[split]));
    limitSplits(this.bySplit, options.limit, this.options.sampleSeed);

    const counts = SPLITS.map((split) => `${split} ${this.bySplit[split].length} (${this.bySplit[split].filter((s) => s.labels[0] === 1).length} positive)`);
    logger.info(`LUNA16 ${this.options.mode === 'patch' ? 'patches' : 'slices'} from ${this.scans.length} scans: ${counts.join(', ')}`);
  }

  samples(split: Split): Sample[] {
    return this.bySplit[split];
  }

  skipped(): SkipCounts {
    return { ...this.skipCounts };
  }

  describe(): Record<string, unknown> {
    const scansPerSplit = Object.fromEntries(SPLITS.map((split) => [split, [...new Set(this.bySplit[split].map((s) => s.id.split('/')[0]))]]));
    return {
      dataset: this.name,
      dir: this.dir,
      annotations: this.files.annotations,
      excluded: this.files.excluded,
      seriesUids: this.files.seriesUids,
      scans: this.scans.length,
      scansPerSplit,
      samples: Object.fromEntries(SPLITS.map((split) => [split, this.bySplit[split].length])),
      positives: Object.fromEntries(SPLITS.map((split) => [split, this.bySplit[split].filter((s) => s.labels[0] === 1).length])),
      options: { ...this.options, limit: this.limit ?? null },
    };
  }

  async loadPixels(sample: Sample, cfg: PreprocessConfig): Promise<Float32Array | null> {
    return preprocessRendered(sample, cfg, (s) => this.renderSample(s), this.skipCounts, logger, 'scan');
  }

  /** Renders a sample as 8-bit greyscale in the lung window (a patch or a whole slice). */
  renderSample(sample: Sample): RawImage {
    const spec = this.specs.get(sample.id);
    if (!spec) throw new Error(`Unknown LUNA16 sample ${sample.id}: it was not listed by this dataset.`);
    const [nx, ny] = spec.scan.geometry.dims;

    if (spec.kind === 'slice') {
      return this.windowed(this.readSlice(spec.scan, spec.k), nx, ny);
    }

    // NOTE: the patch is square in pixels, which is square in mm only when the column and row spacings are equal (true for LIDC-IDRI).
    const size = Math.max(8, Math.round(this.options.patchMm / spec.scan.geometry.spacing[0]));
    const { k, center } = spec.kind === 'nodule' ? { k: spec.k, center: spec.center! } : this.chooseNegativeCenter(spec, sample.id);
    const patch = cropPatch(this.readSlice(spec.scan, k), nx, ny, center[0], center[1], size);
    return this.windowed(patch, size, size);
  }

  private windowed(hu: Float32Array, width: number, height: number): RawImage {
    if (this.rgbWindows) return { data: applyRgbWindows(hu, this.rgbWindows), width, height, channels: 3 };
    return { data: applyWindow(hu, this.options.window), width, height, channels: 1 };
  }

  /**
   * Lists the scans: DICOM series of modality CT and .mhd files, restricted to the LUNA16 scan
   * list when one is given. Unreadable DICOM files are logged, counted as corrupt and left out.
   */
  private indexScans(mhdFiles: string[], dicomFiles: string[], seriesUidsFile: string | undefined): Scan[] {
    const onUnreadable = (error: VolumeFormatError) => {
      this.skipCounts.corrupt++;
      logger.warn({ file: error.file, err: error.message }, 'skipping unreadable DICOM file');
    };
    const series = dicomFiles.length > 0 ? groupDicomSeries(dicomFiles, onUnreadable) : [];
    const ctSeries = series.filter((s) => s.slices[0].modality === '' || s.slices[0].modality === 'CT');
    if (ctSeries.length < series.length) logger.info(`ignoring ${series.length - ctSeries.length} DICOM series that are not CT (e.g. radiographs)`);
    let scans = indexScans(mhdFiles, ctSeries);

    if (seriesUidsFile) {
      const listed = readSeriesUids(seriesUidsFile);
      const kept = scans.filter((scan) => listed.has(scan.seriesUid));
      if (kept.length < scans.length) {
        logger.info(`ignoring ${scans.length - kept.length} scans not listed in ${seriesUidsFile}: scans outside LUNA16 have no nodule annotations`);
      }
      scans = kept;
    } else if (ctSeries.length > 0) {
      // NOTE: LUNA16 keeps 888 LIDC-IDRI scans (its seriesuids.csv). Nodules of the other LIDC-IDRI scans are not in annotations.csv, so their patches would be labelled negative.
      logger.warn('no seriesuids.csv found: every CT series is taken as a LUNA16 scan. Pass seriesUidsCsv to keep only the annotated LUNA16 scans.');
    }
    return scans;
  }

  private chooseSplits(options: Luna16Options): (scan: Scan) => Split {
    const given = givenSplits(options);
    if (given) {
      return (scan) => {
        const split = given.get(scan.seriesUid) ?? given.get(scan.patient);
        if (!split) throw new Error(`Scan ${scan.seriesUid} (patient ${scan.patient}) has no split in ${options.splitFile ?? 'the splits option'}. Add it as train, val or test.`);
        return split;
      };
    }
    const patients = this.scans.map((scan) => scan.patient);
    const withNodules = new Set(this.scans.filter((scan) => scan.nodules.length > 0).map((scan) => scan.patient));
    const assigned = assignSplits(patients, withNodules, this.options.splitFractions, this.options.splitSeed);
    return (scan) => assigned.get(scan.patient)!;
  }

  private addSamples(scan: Scan, split: Split): void {
    const add = (id: string, label: number, spec: Omit<SampleSpec, 'scan'>) => {
      this.specs.set(id, { scan, ...spec });
      this.bySplit[split].push({ id, patient: scan.patient, split, labels: [label] });
    };
    const nz = scan.geometry.dims[2];
    const sliceMm = scan.geometry.spacing[2];
    const noduleVoxels = scan.nodules.map((n) => ({ n, voxel: worldToVoxel(scan.geometry, n.world) }));
    const avoidVoxels = scan.avoid.map((n) => ({ n, voxel: worldToVoxel(scan.geometry, n.world) }));
    // The slice nearest a nodule centre is positive whenever it cuts the nodule, so a nodule
    // smaller than the slice spacing still yields a positive.
    const isPositiveSlice = (k: number, n: Finding, voxel: Vec3) => {
      const distanceMm = Math.abs(k - voxel[2]) * sliceMm;
      if (distanceMm <= this.options.positiveSliceFraction * n.radiusMm) return true;
      return k === Math.round(voxel[2]) && distanceMm <= n.radiusMm;
    };

    if (this.options.mode === 'slice') {
      for (let k = 0; k < nz; k++) {
        const positive = noduleVoxels.some(({ n, voxel }) => isPositiveSlice(k, n, voxel));
        const clear = avoidVoxels.every(({ n, voxel }) => Math.abs(k - voxel[2]) * sliceMm > n.radiusMm + this.options.negativeMarginMm);
        if (positive) add(`${scan.seriesUid}/k${k}`, 1, { k, kind: 'slice' });
        else if (clear) add(`${scan.seriesUid}/k${k}`, 0, { k, kind: 'slice' });
      }
      return;
    }

    noduleVoxels.forEach(({ n, voxel }, index) => {
      for (let k = 0; k < nz; k++) {
        if (isPositiveSlice(k, n, voxel)) add(`${scan.seriesUid}/k${k}/nodule${index}`, 1, { k, center: [voxel[0], voxel[1]], kind: 'nodule' });
      }
    });
    const rng = createRng(this.options.splitSeed ^ hashString(scan.seriesUid));
    for (let index = 0; index < this.options.negativesPerScan; index++) {
      const k = randomInt(rng, nz);
      add(`${scan.seriesUid}/k${k}/negative${index}`, 0, { k, kind: 'negative' });
    }
  }

  /**
   * Picks a negative patch centre on lung tissue whose patch touches no nodule or excluded
   * finding, starting at the sample's slice and moving outward when that slice has no such
   * place. The choice is seeded by the sample id, so it repeats across runs.
   */
  private chooseNegativeCenter(spec: SampleSpec, id: string): { k: number; center: [number, number] } {
    const { scan } = spec;
    const [nx, ny, nz] = scan.geometry.dims;
    const [sx, sy, sz] = scan.geometry.spacing;
    const halfMm = this.options.patchMm / 2;
    const avoid = scan.avoid.map((n) => ({ n, voxel: worldToVoxel(scan.geometry, n.world) }));
    const rng: Rng = createRng(this.options.splitSeed ^ hashString(id));

    for (let step = 0; step < 2 * nz; step++) {
      const offset = step % 2 === 0 ? step / 2 : -(step + 1) / 2;
      const k = spec.k + offset;
      if (k < 0 || k >= nz) continue;
      const mask = lungMask2d(this.readSlice(scan, k), nx, ny);
      const lung: number[] = [];
      for (let p = 0; p < mask.length; p++) if (mask[p]) lung.push(p);
      if (lung.length < MIN_LUNG_PIXELS) continue;

      for (let attempt = 0; attempt < 200; attempt++) {
        const p = lung[randomInt(rng, lung.length)];
        const x = p % nx;
        const y = (p - x) / nx;
        const clear = avoid.every(({ n, voxel }) => {
          // Distance from the finding's centre to the patch square on slice k, in mm.
          const dx = Math.max(0, Math.abs(x - voxel[0]) * sx - halfMm);
          const dy = Math.max(0, Math.abs(y - voxel[1]) * sy - halfMm);
          const dz = (k - voxel[2]) * sz;
          const limit = n.radiusMm + this.options.negativeMarginMm;
          return dx * dx + dy * dy + dz * dz > limit * limit;
        });
        if (clear) return { k, center: [x, y] };
      }
    }
    logger.warn({ sample: id }, 'no lung tissue clear of nodules in this scan: using the slice centre for the negative patch');
    return { k: spec.k, center: [nx / 2, ny / 2] };
  }

  private readSlice(scan: Scan, k: number): Float32Array {
    const key = `${scan.seriesUid}/${k}`;
    let hu = this.sliceCache.get(key);
    if (hu) {
      this.sliceCache.delete(key);
    } else {
      hu = scan.mhd ? Float32Array.from(readMetaImageSlice(scan.mhd, k)) : readDicomSliceHu(scan.dicom!.slices[k].file).hu;
    }
    this.sliceCache.set(key, hu);
    if (this.sliceCache.size > 8) this.sliceCache.delete(this.sliceCache.keys().next().value!);
    return hu;
  }
}

/** Opens a LUNA16 folder: .mhd/.raw scans or DICOM series, and annotations.csv. */
export function openLuna16(dir: string, options: Luna16Options = {}): Luna16Dataset {
  return new Luna16Dataset(dir, options);
}

function findLunaFiles(dir: string): { mhd: string[]; dicom: string[]; annotations?: string; excluded?: string; seriesUids?: string } {
  if (!fs.existsSync(dir)) throw new Error(`LUNA16 folder ${dir} not found. Pass the folder holding the .mhd scans (or DICOM series) and annotations.csv.`);
  const mhd: string[] = [];
  const csv: string[] = [];
  // LUNA16's seg-lungs-LUNA16 folder contains lung masks named like the scans, so it is skipped.
  const isMaskFolder = (name: string) => /^seg-lungs/i.test(name);
  walkFiles(
    dir,
    (file) => {
      if (/\.mhd$/i.test(file)) mhd.push(file);
      else if (/\.csv$/i.test(file)) csv.push(file);
    },
    isMaskFolder,
  );
  csv.sort();
  return {
    mhd: mhd.sort(),
    dicom: findDicomFiles(dir).filter((file) => !path.relative(dir, file).split(path.sep).some(isMaskFolder)),
    annotations: csv.find((file) => path.basename(file).toLowerCase() === 'annotations.csv'),
    excluded: csv.find((file) => /^annotations_excluded.*\.csv$/i.test(path.basename(file))),
    seriesUids: csv.find((file) => path.basename(file).toLowerCase() === 'seriesuids.csv'),
  };
}

function indexScans(mhdFiles: string[], series: DicomSeries[]): Scan[] {
  const scans = new Map<string, Scan>();
  for (const s of series) {
    const source = path.dirname(s.slices[0].file);
    scans.set(s.seriesUid, {
      seriesUid: s.seriesUid,
      patient: s.patientId || s.seriesUid,
      geometry: { dims: s.dims, spacing: s.spacing, origin: s.origin, direction: s.direction, source },
      dicom: s,
      nodules: [],
      avoid: [],
    });
  }
  // A .mhd scan replaces the DICOM series of the same seriesuid (reading one slice is cheaper),
  // keeping the DICOM PatientID, since LUNA16 .mhd files carry no patient id.
  const mhdBySeries = new Map<string, string>();
  for (const file of mhdFiles) {
    const header = readMetaImageHeader(file);
    const seriesUid = path.basename(file).replace(/\.mhd$/i, '');
    const previous = mhdBySeries.get(seriesUid);
    if (previous) throw new Error(`Two .mhd files for scan ${seriesUid}: ${previous} and ${file}. Keep one copy of each scan under the dataset folder.`);
    mhdBySeries.set(seriesUid, file);
    const patient = scans.get(seriesUid)?.patient ?? seriesUid;
    scans.set(seriesUid, {
      seriesUid,
      patient,
      geometry: { dims: header.dims, spacing: header.spacing, origin: header.origin, direction: header.direction, source: file },
      mhd: header,
      nodules: [],
      avoid: [],
    });
  }
  return [...scans.values()].sort((a, b) => a.seriesUid.localeCompare(b.seriesUid));
}

/** Reads seriesuids.csv: one seriesuid a line, with or without a "seriesuid" header. */
function readSeriesUids(file: string): Set<string> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new Error(`Failed to read the LUNA16 scan list ${file}: ${(error as Error).message}`);
  }
  const uids = text
    .split(/\r?\n/)
    .map((line) => line.split(',')[0].trim())
    .filter((uid) => uid !== '' && uid.toLowerCase() !== 'seriesuid');
  return new Set(uids);
}

interface NoduleRow {
  world: Vec3;
  diameterMm: number;
}

function readNoduleCsv(file: string): Map<string, NoduleRow[]> {
  let records: Record<string, string>[];
  try {
    records = parse(fs.readFileSync(file, 'utf8'), { columns: true, skip_empty_lines: true, trim: true });
  } catch (error) {
    throw new Error(`Failed to read LUNA16 annotations ${file}: ${(error as Error).message}`);
  }
  const required = ['seriesuid', 'coordX', 'coordY', 'coordZ', 'diameter_mm'];
  const missing = required.filter((column) => records.length > 0 && !(column in records[0]));
  if (missing.length > 0) throw new Error(`LUNA16 annotations ${file} lack the column(s) ${missing.join(', ')}. Expected the header ${required.join(',')}.`);

  const bySeries = new Map<string, NoduleRow[]>();
  records.forEach((record, index) => {
    const values = [record.coordX, record.coordY, record.coordZ, record.diameter_mm].map(Number);
    if (values.some((v) => !Number.isFinite(v))) {
      throw new Error(`Invalid row ${index + 2} in LUNA16 annotations ${file}: coordinates and diameter must be numbers, got ${JSON.stringify(record)}.`);
    }
    const list = bySeries.get(record.seriesuid) ?? [];
    list.push({ world: values.slice(0, 3) as Vec3, diameterMm: values[3] });
    bySeries.set(record.seriesuid, list);
  });
  return bySeries;
}

function attachFindings(scans: Scan[], nodules: Map<string, NoduleRow[]>, excluded: Map<string, NoduleRow[]>, minDiameterMm: number): void {
  for (const scan of scans) {
    for (const row of nodules.get(scan.seriesUid) ?? []) {
      const finding = { world: row.world, radiusMm: row.diameterMm / 2 };
      if (row.diameterMm >= minDiameterMm) scan.nodules.push(finding);
      scan.avoid.push(finding);
    }
    for (const row of excluded.get(scan.seriesUid) ?? []) {
      scan.avoid.push({ world: row.world, radiusMm: row.diameterMm > 0 ? row.diameterMm / 2 : EXCLUDED_DEFAULT_RADIUS_MM });
    }
  }
}

/** FNV-1a hash of a string, for per-scan and per-sample seeds. */
function hashString(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}
