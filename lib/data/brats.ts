// BraTS brain MRI as a 2-D target domain: axial slices with and without tumour.
//
// A case is a folder holding a FLAIR volume, a T1c (post-contrast T1) volume and the
// ground-truth label volume, all NIfTI (.nii or .nii.gz) and named as BraTS names them
// (*flair*, *t1c* / *t1ce*, *seg* / OT*). An optional *brainmask* volume marks the brain.
// A slice is positive when its tumour area (labels > 0) is at least positiveMinAreaMm2,
// negative when it is at most negativeMaxAreaMm2 and the slice shows at least
// minBrainAreaMm2 of brain, and left out (ambiguous) otherwise.
//
// Modalities: 'stack' (default) gives one RGB image per slice, red = FLAIR, green = T1c,
// blue = their mean, so tissue bright in both looks white. 'separate' gives two greyscale
// samples per slice (ids ending /flair and /t1c), which share the slice's case and split.
// Each volume is mapped to 8 bits by its own percentile window inside the brain, because MRI
// intensities have no absolute scale.
import fs from 'node:fs';
import path from 'node:path';
import type { PreprocessConfig, RawImage } from '../clip/preprocess.ts';
import { defaultPromptsFile } from '../eval/zeroShot.ts';
import { moduleLog } from '../util/log.ts';
import { assignSplits, DEFAULT_SPLIT_FRACTIONS, parseSplitName, givenSplits, type SplitFractions, rejectUnknownOptions } from './caseSplits.ts';
import type { Sample, SkipCounts, Split, TargetDataset } from './dataset.ts';
import { SPLITS } from './dataset.ts';
import { preprocessRendered } from './renderedSample.ts';
import { type NiftiVolume, readNifti } from './nifti.ts';
import { limitSplits } from './sampling.ts';
import { assertPatientDisjoint } from './splits.ts';
import { VolumeFormatError } from './volume.ts';
import { applyWindow, percentileWindow } from './window.ts';

const logger = moduleLog('brats');

/** Sub-region names of the BraTS 2012-2015 labels. BraTS 2017 and later use 1, 2 and 4 only (1 = necrotic and non-enhancing core). */
export const BRATS_2015_LABELS: Record<string, string> = {
  '1': 'Necrosis',
  '2': 'Edema',
  '3': 'Non_Enhancing_Tumour',
  '4': 'Enhancing_Tumour',
};

export interface BratsOptions {
  /** 'tumour' (default): one finding, Tumour. 'subregions': Tumour plus one finding per label in labelNames. */
  findings?: 'tumour' | 'subregions';
  /** 'stack' (default): FLAIR, T1c and their mean as RGB. 'separate': one greyscale sample per modality. */
  modalities?: 'stack' | 'separate';
  /** Minimum tumour area in mm^2 for a positive slice (default 100). */
  positiveMinAreaMm2?: number;
  /** Maximum tumour area in mm^2 for a negative slice (default 0). */
  negativeMaxAreaMm2?: number;
  /** Minimum area in mm^2 of a sub-region for its finding to be positive (default 20). */
  subregionMinAreaMm2?: number;
  /** Minimum brain area in mm^2 for a negative slice (default 4000), so that negatives are not just the small top and bottom slices. */
  minBrainAreaMm2?: number;
  /** Use every n-th axial slice (default 1). */
  sliceStride?: number;
  /** Label value to sub-region finding name (default BRATS_2015_LABELS). */
  labelNames?: Record<string, string>;
  /** Lower and upper percentile of the 8-bit intensity window inside the brain (default [0.5, 99.5]). */
  intensityPercentiles?: [number, number];
  /** Split per case id (the case folder name). Every case must be covered. */
  splits?: Record<string, Split>;
  /** CSV "<case>,<train|val|test>" with a header row; used when `splits` is not given. */
  splitFile?: string;
  /** Seeded split by case when no split is given and the cases are not in train/validation/test folders (default 0.6/0.2/0.2). */
  splitFractions?: SplitFractions;
  /** Seed of the split (default 0). */
  splitSeed?: number;
  /** Maximum samples per split, one number for all splits or one per split (default: no limit). */
  limit?: number | Partial<Record<Split, number>>;
  /** Seed of the stratified sample taken when a split exceeds its limit (default 0). */
  sampleSeed?: number;
  /** Cases whose 8-bit volumes are kept in memory (default 8, about 18 MB each for 240x240x155). Loading a case decodes three NIfTI volumes. */
  cachedCases?: number;
  /** Zero-shot prompt templates (default: the ones shipped with clipfreeze). */
  promptsFile?: string;
}

// Every option key, so that a misspelt key in a config is rejected instead of silently ignored.
// The Record type makes the compiler check that the list matches the interface.
const BRATS_OPTION_KEYS = Object.keys({
  findings: true,
  modalities: true,
  positiveMinAreaMm2: true,
  negativeMaxAreaMm2: true,
  subregionMinAreaMm2: true,
  minBrainAreaMm2: true,
  sliceStride: true,
  labelNames: true,
  intensityPercentiles: true,
  splits: true,
  splitFile: true,
  splitFractions: true,
  splitSeed: true,
  limit: true,
  sampleSeed: true,
  cachedCases: true,
  promptsFile: true,
} satisfies Record<keyof BratsOptions, true>);

interface CaseFiles {
  id: string;
  dir: string;
  flair: string;
  t1c: string;
  label: string;
  brainMask?: string;
  /** Split named by a train/validation/test folder above the case, if any. */
  folderSplit: Split | null;
}

interface SliceSpec {
  caseFiles: CaseFiles;
  k: number;
  modality: 'stack' | 'flair' | 't1c';
}

/** A case's FLAIR and T1c mapped to 8 bits, with the slice geometry needed for display. */
interface CaseImages {
  flair: Uint8Array;
  t1c: Uint8Array;
  dims: [number, number, number];
  orientation: string;
}

export class BratsDataset implements TargetDataset {
  readonly name = 'brats';
  readonly findings: string[];
  readonly promptsFile: string;
  private readonly options: Required<Omit<BratsOptions, 'splits' | 'splitFile' | 'promptsFile' | 'limit'>>;
  private readonly bySplit: Record<Split, Sample[]> = { train: [], val: [], test: [] };
  private readonly specs = new Map<string, SliceSpec>();
  private readonly cases: CaseFiles[];
  private readonly imageCache = new Map<string, CaseImages>();
  private readonly skipCounts: SkipCounts = { missing: 0, corrupt: 0 };
  private readonly limit: BratsOptions['limit'];

  constructor(
    readonly dir: string,
    options: BratsOptions = {},
  ) {
    rejectUnknownOptions(options, BRATS_OPTION_KEYS, 'BraTS');
    this.options = {
      findings: options.findings ?? 'tumour',
      modalities: options.modalities ?? 'stack',
      positiveMinAreaMm2: options.positiveMinAreaMm2 ?? 100,
      negativeMaxAreaMm2: options.negativeMaxAreaMm2 ?? 0,
      subregionMinAreaMm2: options.subregionMinAreaMm2 ?? 20,
      minBrainAreaMm2: options.minBrainAreaMm2 ?? 4000,
      sliceStride: options.sliceStride ?? 1,
      labelNames: options.labelNames ?? BRATS_2015_LABELS,
      intensityPercentiles: options.intensityPercentiles ?? [0.5, 99.5],
      splitFractions: options.splitFractions ?? DEFAULT_SPLIT_FRACTIONS,
      splitSeed: options.splitSeed ?? 0,
      sampleSeed: options.sampleSeed ?? 0,
      cachedCases: options.cachedCases ?? 8,
    };
    this.validateOptions();
    this.limit = options.limit;
    this.promptsFile = options.promptsFile ?? defaultPromptsFile('brats');
    this.findings = this.options.findings === 'tumour' ? ['Tumour'] : ['Tumour', ...Object.values(this.options.labelNames)];

    this.cases = this.findCases(dir);
    if (this.cases.length === 0) {
      throw new Error(`No BraTS cases found under ${dir}: a case is a folder with FLAIR, T1c and segmentation NIfTI files (e.g. *_flair.nii.gz, *_t1ce.nii.gz, *_seg.nii.gz).`);
    }

    const splitOf = this.chooseSplits(options);
    for (const caseFiles of this.cases) this.addSlices(caseFiles, splitOf(caseFiles));
    assertPatientDisjoint(SPLITS.flatMap((split) => this.bySplit[split]));
    limitSplits(this.bySplit, options.limit, this.options.sampleSeed);

    const counts = SPLITS.map((split) => `${split} ${this.bySplit[split].length} (${this.bySplit[split].filter((s) => s.labels[0] === 1).length} with tumour)`);
    logger.info(`BraTS slices from ${this.cases.length} cases: ${counts.join(', ')}`);
  }

  samples(split: Split): Sample[] {
    return this.bySplit[split];
  }

  skipped(): SkipCounts {
    return { ...this.skipCounts };
  }

  describe(): Record<string, unknown> {
    return {
      dataset: this.name,
      dir: this.dir,
      cases: this.cases.length,
      casesPerSplit: Object.fromEntries(SPLITS.map((split) => [split, [...new Set(this.bySplit[split].map((s) => s.patient))]])),
      samples: Object.fromEntries(SPLITS.map((split) => [split, this.bySplit[split].length])),
      positives: Object.fromEntries(SPLITS.map((split) => [split, this.findings.map((_, f) => this.bySplit[split].filter((s) => s.labels[f] === 1).length)])),
      findings: this.findings,
      options: { ...this.options, limit: this.limit ?? null },
    };
  }

  async loadPixels(sample: Sample, cfg: PreprocessConfig): Promise<Float32Array | null> {
    return preprocessRendered(sample, cfg, (s) => this.renderSample(s), this.skipCounts, logger, 'MRI volume');
  }

  /** Renders a slice as 8-bit pixels in radiological display (patient's left on the image right, anterior at the top). */
  renderSample(sample: Sample): RawImage {
    const spec = this.specs.get(sample.id);
    if (!spec) throw new Error(`Unknown BraTS sample ${sample.id}: it was not listed by this dataset.`);
    const images = this.caseImages(spec.caseFiles);
    const [nx, ny] = images.dims;
    const sliceOf = (volume: Uint8Array) => displaySlice(volume.subarray(spec.k * nx * ny, (spec.k + 1) * nx * ny), nx, ny, images.orientation);

    if (spec.modality !== 'stack') {
      const slice = sliceOf(spec.modality === 'flair' ? images.flair : images.t1c);
      return { data: slice.data, width: slice.width, height: slice.height, channels: 1 };
    }
    const flair = sliceOf(images.flair);
    const t1c = sliceOf(images.t1c);
    const rgb = new Uint8Array(flair.data.length * 3);
    for (let p = 0; p < flair.data.length; p++) {
      rgb[3 * p] = flair.data[p];
      rgb[3 * p + 1] = t1c.data[p];
      rgb[3 * p + 2] = (flair.data[p] + t1c.data[p] + 1) >> 1;
    }
    return { data: rgb, width: flair.width, height: flair.height, channels: 3 };
  }

  private validateOptions(): void {
    const o = this.options;
    if (o.findings !== 'tumour' && o.findings !== 'subregions') throw new Error(`Invalid BraTS findings "${o.findings}": use 'tumour' or 'subregions'.`);
    if (o.modalities !== 'stack' && o.modalities !== 'separate') throw new Error(`Invalid BraTS modalities "${o.modalities}": use 'stack' or 'separate'.`);
    if (!(o.positiveMinAreaMm2 > o.negativeMaxAreaMm2)) {
      throw new Error(`Invalid BraTS thresholds: positiveMinAreaMm2 (${o.positiveMinAreaMm2}) must exceed negativeMaxAreaMm2 (${o.negativeMaxAreaMm2}), or slices would be both.`);
    }
    if (!Number.isInteger(o.sliceStride) || o.sliceStride < 1) throw new Error(`Invalid sliceStride ${o.sliceStride}: use an integer >= 1.`);
    const [low, high] = o.intensityPercentiles;
    if (!(low >= 0 && high <= 100 && low < high)) throw new Error(`Invalid intensityPercentiles [${low}, ${high}]: use 0 <= low < high <= 100.`);
  }

  private findCases(dir: string): CaseFiles[] {
    if (!fs.existsSync(dir)) throw new Error(`BraTS folder ${dir} not found. Pass the folder holding the case folders.`);
    const cases: CaseFiles[] = [];
    const seen = new Set<string>();
    const walk = (folder: string, folderSplit: Split | null) => {
      // Each real folder once, so symbolic link cycles end.
      const real = fs.realpathSync(folder);
      if (seen.has(real)) return;
      seen.add(real);
      const entries = fs.readdirSync(folder, { withFileTypes: true }).filter((entry) => !entry.name.startsWith('.'));
      const nifti = entries.filter((entry) => !entry.isDirectory() && /\.nii(\.gz)?$/i.test(entry.name)).map((entry) => entry.name);
      if (nifti.length > 0) {
        const found = classifyCaseFiles(nifti);
        const missing = (['flair', 't1c', 'label'] as const).filter((role) => !found[role]);
        if (missing.length > 0) {
          this.skipCounts.missing++;
          logger.warn({ case: folder, missing }, `skipping case: no ${missing.join(', ')} volume among ${nifti.join(', ')}`);
        } else {
          const file = (name: string) => path.join(folder, name);
          cases.push({
            id: path.basename(folder),
            dir: folder,
            flair: file(found.flair!),
            t1c: file(found.t1c!),
            label: file(found.label!),
            brainMask: found.brainMask ? file(found.brainMask) : undefined,
            folderSplit,
          });
        }
      }
      for (const entry of entries) {
        const full = path.join(folder, entry.name);
        const isDirectory = entry.isDirectory() || (entry.isSymbolicLink() && fs.statSync(full, { throwIfNoEntry: false })?.isDirectory() === true);
        if (isDirectory) walk(full, parseSplitName(entry.name) ?? folderSplit);
      }
    };
    walk(dir, null);

    const ids = new Map<string, string>();
    for (const c of cases) {
      if (ids.has(c.id)) throw new Error(`Two BraTS case folders are named ${c.id}: ${ids.get(c.id)} and ${c.dir}. Case ids must be unique.`);
      ids.set(c.id, c.dir);
    }
    return cases.sort((a, b) => a.id.localeCompare(b.id));
  }

  private chooseSplits(options: BratsOptions): (c: CaseFiles) => Split {
    const given = givenSplits(options);
    if (given) {
      return (c) => {
        const split = given.get(c.id);
        if (!split) throw new Error(`BraTS case ${c.id} has no split in ${options.splitFile ?? 'the splits option'}. Add it as train, val or test.`);
        return split;
      };
    }
    if (this.cases.every((c) => c.folderSplit !== null)) return (c) => c.folderSplit!;
    if (this.cases.some((c) => c.folderSplit !== null)) {
      logger.warn('some BraTS cases are in train/validation/test folders and some are not: splitting all cases by seed instead');
    }
    // Every BraTS case has a tumour, so stratifying by positives is moot: all ids count as positive.
    const ids = this.cases.map((c) => c.id);
    const assigned = assignSplits(ids, new Set(ids), this.options.splitFractions, this.options.splitSeed);
    return (c) => assigned.get(c.id)!;
  }

  private addSlices(caseFiles: CaseFiles, split: Split): void {
    // NOTE: opening decodes the label and brain mask (or FLAIR) of every case, about 0.3 s per
    // volume on one core here, so a full BraTS release (over 1,000 cases) takes minutes to open.
    const label = readNifti(caseFiles.label);
    const brain = caseFiles.brainMask ? readNifti(caseFiles.brainMask) : readNifti(caseFiles.flair);
    checkSameGrid(label, brain);
    checkAxial(label);

    const [nx, ny, nz] = label.dims;
    const pixelMm2 = label.spacing[0] * label.spacing[1];
    const labelValues = Object.keys(this.options.labelNames).map(Number);
    const modalities: SliceSpec['modality'][] = this.options.modalities === 'stack' ? ['stack'] : ['flair', 't1c'];

    for (let k = 0; k < nz; k += this.options.sliceStride) {
      let tumour = 0;
      let brainPixels = 0;
      const perLabel = new Map<number, number>();
      for (let p = k * nx * ny; p < (k + 1) * nx * ny; p++) {
        const value = Math.round(label.data[p]);
        if (value > 0) {
          tumour++;
          perLabel.set(value, (perLabel.get(value) ?? 0) + 1);
        }
        if (brain.data[p] !== 0) brainPixels++;
      }

      const tumourMm2 = tumour * pixelMm2;
      const positive = tumourMm2 >= this.options.positiveMinAreaMm2;
      const negative = tumourMm2 <= this.options.negativeMaxAreaMm2 && brainPixels * pixelMm2 >= this.options.minBrainAreaMm2;
      if (!positive && !negative) continue;

      const labels = [positive ? 1 : 0];
      if (this.options.findings === 'subregions') {
        for (const value of labelValues) labels.push(positive && (perLabel.get(value) ?? 0) * pixelMm2 >= this.options.subregionMinAreaMm2 ? 1 : 0);
      }
      for (const modality of modalities) {
        const id = modality === 'stack' ? `${caseFiles.id}/k${k}` : `${caseFiles.id}/k${k}/${modality}`;
        this.specs.set(id, { caseFiles, k, modality });
        this.bySplit[split].push({ id, patient: caseFiles.id, split, labels: [...labels] });
      }
    }
  }

  private caseImages(caseFiles: CaseFiles): CaseImages {
    const cached = this.imageCache.get(caseFiles.id);
    if (cached) {
      this.imageCache.delete(caseFiles.id);
      this.imageCache.set(caseFiles.id, cached);
      return cached;
    }
    const flair = readNifti(caseFiles.flair);
    const t1c = readNifti(caseFiles.t1c);
    checkSameGrid(flair, t1c);
    const mask = caseFiles.brainMask ? readNifti(caseFiles.brainMask).data : undefined;
    const [low, high] = this.options.intensityPercentiles;
    const toBytes = (volume: NiftiVolume) => {
      const brain = mask ?? volume.data.map((v) => (v !== 0 ? 1 : 0));
      const bytes = applyWindow(volume.data, percentileWindow(volume.data, low, high, brain));
      for (let p = 0; p < bytes.length; p++) if (brain[p] === 0) bytes[p] = 0;
      return bytes;
    };
    const images: CaseImages = { flair: toBytes(flair), t1c: toBytes(t1c), dims: flair.dims, orientation: flair.orientation };
    this.imageCache.set(caseFiles.id, images);
    if (this.imageCache.size > this.options.cachedCases) this.imageCache.delete(this.imageCache.keys().next().value!);
    return images;
  }
}

/** Opens a BraTS folder of case folders (FLAIR, T1c and segmentation NIfTI per case). */
export function openBrats(dir: string, options: BratsOptions = {}): BratsDataset {
  return new BratsDataset(dir, options);
}

/** Picks the FLAIR, T1c, label and brain mask files among a case folder's NIfTI file names. */
export function classifyCaseFiles(names: string[]): { flair?: string; t1c?: string; label?: string; brainMask?: string } {
  const stem = (name: string) => name.replace(/\.nii(\.gz)?$/i, '').toLowerCase();
  return {
    flair: names.find((name) => /flair/.test(stem(name))),
    t1c: names.find((name) => /t1c|t1ce|t1gd|t1_?contrast/.test(stem(name))),
    label: names.find((name) => /otmulticlass|(^|[_.-])(seg|ot|label|labels|truth)$|^seg|^ot[_.-]/.test(stem(name))),
    brainMask: names.find((name) => /brain_?mask/.test(stem(name))),
  };
}

function checkSameGrid(a: NiftiVolume, b: NiftiVolume): void {
  if (a.dims.some((d, i) => d !== b.dims[i])) {
    throw new VolumeFormatError(b.source, `dimensions ${b.dims.join('x')} differ from ${a.dims.join('x')} of ${a.source}. The volumes of a case must share one voxel grid.`);
  }
}

function checkAxial(volume: NiftiVolume): void {
  const third = volume.orientation[2];
  if (third !== 'S' && third !== 'I') {
    throw new VolumeFormatError(volume.source, `voxel axes are ${volume.orientation}, but the third axis must run inferior-superior for axial slices. Reorient the case to RAS or LPS first.`);
  }
}

/**
 * Reorders an axial slice (x fastest) for radiological display: image columns run from the
 * patient's right to left, rows from anterior to posterior.
 */
export function displaySlice(slice: Uint8Array, nx: number, ny: number, orientation: string): { data: Uint8Array; width: number; height: number } {
  // Which voxel axis (0 = i, 1 = j) is left-right, and whether it must be flipped.
  const lrAxis = orientation[0] === 'L' || orientation[0] === 'R' ? 0 : 1;
  const apAxis = 1 - lrAxis;
  const flipLr = orientation[lrAxis] === 'R'; // display wants index growing toward the left
  const flipAp = orientation[apAxis] === 'A'; // display wants index growing toward posterior
  const width = lrAxis === 0 ? nx : ny;
  const height = lrAxis === 0 ? ny : nx;
  const out = new Uint8Array(nx * ny);
  for (let row = 0; row < height; row++) {
    for (let col = 0; col < width; col++) {
      const lr = flipLr ? width - 1 - col : col;
      const ap = flipAp ? height - 1 - row : row;
      const i = lrAxis === 0 ? lr : ap;
      const j = lrAxis === 0 ? ap : lr;
      out[row * width + col] = slice[j * nx + i];
    }
  }
  return { data: out, width, height };
}
