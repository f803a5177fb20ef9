// NIH ChestX-ray14 (Wang et al., CVPR 2017): 112,120 frontal chest X-rays of 30,805 patients,
// 14 findings, multi-label. A dataset folder contains the label file, the official split lists
// and the images in one of two layouts:
//
//   <dir>/images/*.png                       the NIH download (images_001.tar.gz ... unpacked)
//   <dir>/images_001/images/*.png ... images_012/images/*.png   the Kaggle copy
//
// Images listed in the split lists but absent from the folder are counted, reported and
// skipped (or rejected with strictImages). A corrupt image is skipped with a warning and
// counted when its pixels are loaded.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ImageDecodeError, preprocessImage, preprocessKey, type PreprocessConfig } from '../clip/preprocess.ts';
import { SPLITS, type Sample, type SkipCounts, type Split, type TargetDataset } from './dataset.ts';
import { CHESTXRAY14_FINDINGS, findLabelFile, readLabelFile, type LabelTable } from './labels.ts';
import { PixelCache } from './pixelCache.ts';
import { stratifiedSample } from './sampling.ts';
import { rejectUnknownOptions } from './caseSplits.ts';
import { assertPatientDisjoint, chooseValidationPatients, DEFAULT_VAL_FRACTION, readOfficialSplit } from './splits.ts';
import { moduleLog } from '../util/log.ts';

const logger = moduleLog('chestxray14');

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg']);
const KAGGLE_FOLDER = /^images_\d{3}$/;

/** Image names shown in a message before the rest are only counted. */
const NAMES_SHOWN = 5;

/**
 * Data folders whose missing and unlisted images were already logged at warn level by this
 * process. A study opens the same folder for every run, so later opens log them at debug level.
 */
const foldersWarned = new Set<string>();

export const DEFAULT_PROMPTS_FILE = fileURLToPath(new URL('../eval/prompts/chestxray14.json', import.meta.url));

export interface ChestXray14Options {
  /** Label file path. Default: Data_Entry_2017_v2020.csv or Data_Entry_2017.csv in the folder. */
  labelFile?: string;
  /** Fraction of train_val patients held out as the validation split. Default 0.1. */
  valFraction?: number;
  /** Seed of the validation patient choice. Default 0. */
  splitSeed?: number;
  /** Maximum images per split, one number for all splits or one per split. Default: no limit. */
  limit?: number | Partial<Record<Split, number>>;
  /** Seed of the stratified sample taken when a split exceeds its limit. Default 0. */
  sampleSeed?: number;
  /** Throw when listed images are absent, instead of skipping them. Default false. */
  strictImages?: boolean;
  /** Throw on a malformed label row or unknown finding, instead of skipping it. Default false. */
  strictLabels?: boolean;
  /** Cache preprocessed pixels on disk. Default true. */
  cache?: boolean;
  /** Pixel cache folder. Default: $CLIPFREEZE_CACHE_DIR/pixels or .cache/pixels. */
  cacheDir?: string;
  /** Zero-shot prompt templates. Default: the ones shipped with clipfreeze. */
  promptsFile?: string;
  /**
   * Replaces the CLIP preprocessing, e.g. to count decodes in tests.
   * NOTE: the pixel cache key does not include this function, so pair it with cache: false or
   * its own cacheDir.
   */
  decode?: (file: string, cfg: PreprocessConfig) => Promise<Float32Array>;
}

// Every option key, so that a misspelt key in a config is rejected instead of silently ignored.
// The Record type makes the compiler check that the list matches the interface.
const CHESTXRAY14_OPTION_KEYS = Object.keys({
  labelFile: true,
  valFraction: true,
  splitSeed: true,
  limit: true,
  sampleSeed: true,
  strictImages: true,
  strictLabels: true,
  cache: true,
  cacheDir: true,
  promptsFile: true,
  decode: true,
} satisfies Record<keyof ChestXray14Options, true>);

type Layout = 'nih' | 'kaggle' | 'mixed';

interface ImageScan {
  files: Map<string, string>;
  layout: Layout;
}

export class ChestXray14Dataset implements TargetDataset {
  readonly name = 'chestxray14';
  readonly findings: string[] = [...CHESTXRAY14_FINDINGS];
  readonly promptsFile: string;
  readonly dir: string;
  readonly pixelCache: PixelCache | null;

  private readonly options: ChestXray14Options;
  private readonly files: Map<string, string>;
  private readonly bySplit: Record<Split, Sample[]>;
  private readonly info: Record<string, unknown>;
  private readonly failed = new Set<string>();
  private missing: number;
  private corrupt = 0;

  private constructor(dir: string, options: ChestXray14Options, files: Map<string, string>, bySplit: Record<Split, Sample[]>, missing: number, info: Record<string, unknown>) {
    this.dir = dir;
    this.options = options;
    this.files = files;
    this.bySplit = bySplit;
    this.missing = missing;
    this.info = info;
    this.promptsFile = options.promptsFile ?? DEFAULT_PROMPTS_FILE;
    this.pixelCache = options.cache === false ? null : new PixelCache(options.cacheDir);
  }

  /** Opens a ChestX-ray14 folder: finds the images, reads labels and splits, and builds the samples. */
  static open(dir: string, options: ChestXray14Options = {}): ChestXray14Dataset {
    rejectUnknownOptions(options, CHESTXRAY14_OPTION_KEYS, 'ChestX-ray14');
    const root = path.resolve(dir);
    const expected = 'the folder that contains Data_Entry_2017_v2020.csv (or Data_Entry_2017.csv), train_val_list.txt, test_list.txt and images/';
    if (!fs.existsSync(root)) throw new Error(`ChestX-ray14 folder not found: ${root}. Pass ${expected}.`);
    if (!fs.statSync(root).isDirectory()) throw new Error(`ChestX-ray14 path ${root} is a file, not a folder. Pass ${expected}.`);
    const started = Date.now();

    // 1. Images present on disk, and the official split lists.
    const scan = scanImages(root);
    const official = readOfficialSplit(root);
    const listed = [...official.trainVal, ...official.test];
    const absent = listed.filter((name) => !scan.files.has(name));
    const firstOpen = !foldersWarned.has(root);
    const warnOnce = (message: string) => (firstOpen ? logger.warn(message) : logger.debug(message));
    if (absent.length > 0) {
      const message = `${absent.length} of ${listed.length} images listed in the split lists are missing from ${root} (first: ${absent.slice(0, NAMES_SHOWN).join(', ')})`;
      if (options.strictImages) throw new Error(`${message}. Download the missing images, or open the dataset without the strictImages option (--strict-images) to skip them.`);
      warnOnce(`${message}. They are skipped. The count is in each run's dataset.json, and later opens of this folder in this process log it at debug level.`);
    }
    const unlisted = [...scan.files.keys()].filter((name) => !official.trainVal.has(name) && !official.test.has(name));
    if (unlisted.length > 0) {
      warnOnce(`${unlisted.length} image(s) in ${root} are in neither split list and are ignored (first: ${unlisted.slice(0, NAMES_SHOWN).join(', ')}).`);
    }
    foldersWarned.add(root);

    // 2. Labels of the listed images that are present.
    const present = new Set(listed.filter((name) => scan.files.has(name)));
    const labelFile = options.labelFile ?? findLabelFile(root);
    const labels = readLabelFile(labelFile, { keep: present, strict: options.strictLabels });
    const unlabelled = [...present].filter((name) => !labels.rows.has(name));
    if (unlabelled.length > 0) {
      logger.warn(`${unlabelled.length} image(s) have no valid row in ${labelFile} and are skipped (first: ${unlabelled.slice(0, NAMES_SHOWN).join(', ')}).`);
    }

    // 3. Splits: test as published, val carved from train_val by patient.
    const all = buildSamples(labels, official.trainVal, official.test, options);
    assertPatientDisjoint(all);

    // 4. Optional per-split limit with a seeded sample stratified by finding.
    const bySplit = {} as Record<Split, Sample[]>;
    for (const split of SPLITS) {
      const samples = all.filter((s) => s.split === split);
      const limit = typeof options.limit === 'number' ? options.limit : options.limit?.[split];
      bySplit[split] = limit === undefined ? samples : stratifiedSample(samples, limit, options.sampleSeed ?? 0);
    }

    const info = {
      name: 'chestxray14',
      dir: root,
      layout: scan.layout,
      labelFile,
      labelForm: labels.form,
      imagesFound: scan.files.size,
      listed: listed.length,
      missing: absent.length,
      firstMissing: absent.slice(0, NAMES_SHOWN),
      unlisted: unlisted.length,
      unlabelled: unlabelled.length,
      skippedLabelRows: { malformed: labels.malformed, unknownFinding: labels.unknownFinding },
      valFraction: options.valFraction ?? DEFAULT_VAL_FRACTION,
      splitSeed: options.splitSeed ?? 0,
      limit: options.limit ?? null,
      sampleSeed: options.sampleSeed ?? 0,
      strictImages: options.strictImages ?? false,
    };
    const dataset = new ChestXray14Dataset(root, options, scan.files, bySplit, absent.length, info);
    const counts = SPLITS.map((s) => `${s} ${bySplit[s].length}`).join(', ');
    logger.info(`ChestX-ray14 at ${root}: ${scan.files.size} images (${scan.layout} layout); ${counts}; opened in ${Date.now() - started} ms`);
    return dataset;
  }

  samples(split: Split): Sample[] {
    return this.bySplit[split];
  }

  /** Returns the image file of a sample. */
  imagePath(sample: Sample): string {
    const file = this.files.get(sample.id);
    if (!file) throw new Error(`Image ${sample.id} is not part of the ChestX-ray14 dataset at ${this.dir}.`);
    return file;
  }

  async loadPixels(sample: Sample, cfg: PreprocessConfig): Promise<Float32Array | null> {
    if (this.failed.has(sample.id)) return null;
    const file = this.imagePath(sample);
    const decode = this.options.decode ?? preprocessImage;

    try {
      if (!this.pixelCache) return await decode(file, cfg);
      return await this.pixelCache.getOrCompute(file, preprocessKey(cfg), () => decode(file, cfg), cfg);
    } catch (err) {
      if (!(err instanceof ImageDecodeError) && (err as Error).name !== 'ImageDecodeError') throw err;

      // Count each image once. Later calls return null without decoding again.
      this.failed.add(sample.id);
      if (!fs.existsSync(file)) {
        this.missing++;
        logger.warn(`Image ${file} was removed after the dataset was opened; skipping it.`);
      } else {
        this.corrupt++;
        if (this.corrupt <= NAMES_SHOWN) logger.warn(`Skipping corrupt image: ${(err as Error).message}`);
        else if (this.corrupt === NAMES_SHOWN + 1) logger.warn('More corrupt images are skipped; their number is in the dataset summary.');
      }
      return null;
    }
  }

  describe(): Record<string, unknown> {
    const splits: Record<string, unknown> = {};
    for (const split of SPLITS) {
      const samples = this.bySplit[split];
      const positives: Record<string, number> = {};
      this.findings.forEach((f, k) => (positives[f] = samples.reduce((sum, s) => sum + s.labels[k], 0)));
      splits[split] = { images: samples.length, patients: new Set(samples.map((s) => s.patient)).size, positives };
    }
    return { ...this.info, findings: this.findings, splits, skipped: this.skipped(), pixelCache: this.pixelCache?.dir ?? null };
  }

  skipped(): SkipCounts {
    return { missing: this.missing, corrupt: this.corrupt };
  }
}

/** Finds the images in the NIH layout (images/) and the Kaggle layout (images_NNN/images/). */
export function scanImages(root: string): ImageScan {
  const folders: string[] = [];
  if (isDirectory(path.join(root, 'images'))) folders.push(path.join(root, 'images'));
  const kaggle = fs
    .readdirSync(root)
    .filter((name) => KAGGLE_FOLDER.test(name) && isDirectory(path.join(root, name, 'images')))
    .sort()
    .map((name) => path.join(root, name, 'images'));
  folders.push(...kaggle);
  if (folders.length === 0) {
    const hasImagesHere = fs.readdirSync(root).some((name) => IMAGE_EXTENSIONS.has(path.extname(name).toLowerCase()));
    const hint = hasImagesHere ? ` ${root} contains images itself: pass the folder that contains it and the label file.` : '';
    throw new Error(`No image folder in ${root}: expected images/ (NIH download) or images_001/images/ ... images_012/images/ (Kaggle copy).${hint}`);
  }

  const files = new Map<string, string>();
  let duplicates = 0;
  for (const folder of folders) {
    for (const name of fs.readdirSync(folder)) {
      if (!IMAGE_EXTENSIONS.has(path.extname(name).toLowerCase())) continue;
      if (files.has(name)) {
        duplicates++;
        continue;
      }
      files.set(name, path.join(folder, name));
    }
  }
  if (duplicates > 0) logger.warn(`${duplicates} image name(s) appear in more than one image folder under ${root}; the first copy is used.`);

  let layout: Layout = 'kaggle';
  if (isDirectory(path.join(root, 'images'))) layout = kaggle.length > 0 ? 'mixed' : 'nih';
  return { files, layout };
}

/** Assigns each labelled image its split; val patients come from train_val. */
function buildSamples(labels: LabelTable, trainVal: Set<string>, test: Set<string>, options: ChestXray14Options): Sample[] {
  const trainValPatients = [...labels.rows.values()].filter((row) => trainVal.has(row.image)).map((row) => row.patient);
  const valPatients = chooseValidationPatients(trainValPatients, options.valFraction ?? DEFAULT_VAL_FRACTION, options.splitSeed ?? 0);

  const samples: Sample[] = [];
  const names = [...labels.rows.keys()].sort();
  for (const name of names) {
    const row = labels.rows.get(name)!;
    let split: Split;
    if (test.has(name)) split = 'test';
    else if (trainVal.has(name)) split = valPatients.has(row.patient) ? 'val' : 'train';
    else continue;
    samples.push({ id: name, patient: row.patient, split, labels: row.labels });
  }
  return samples;
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}
