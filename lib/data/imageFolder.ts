// Folder-per-class natural-image sets (CIFAR-10, Imagenette, ...) used to measure forgetting:
// the source-domain zero-shot accuracy of a model before and after fine-tuning.
//
// Accepted layouts, searched in this order:
//   <root>/<class>/*.{jpg,jpeg,png}
//   <root>/{test,val,validation,train}/<class>/*.{jpg,jpeg,png}
// Class folders are sorted by name, as torchvision's ImageFolder sorts them. A `classes.txt`
// in the root or the class folder's parent maps folder names (such as ImageNet wnids) to
// readable class names, one `<folder><tab or space><name>` per line. Without it, the folder
// name with underscores as spaces is the class name.
import fs from 'node:fs';
import path from 'node:path';
import { createRng, shuffleInPlace } from '../util/rng.ts';

const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png']);
const SPLIT_FOLDERS = ['test', 'val', 'validation', 'train'];

export interface ImageFolderSample {
  file: string;
  /** Index into `ImageFolderSet.classNames`. */
  label: number;
}

export interface ImageFolderSet {
  /** Set name for logs and records: the option given, else the root folder's name. */
  name: string;
  root: string;
  /** Folder that contains the class folders. */
  classRoot: string;
  /** Class folder names, sorted. */
  classFolders: string[];
  /** Readable class names used in prompts, in the order of `classFolders`. */
  classNames: string[];
  samples: ImageFolderSample[];
}

export interface ImageFolderOptions {
  name?: string;
}

/** Opens a folder-per-class image set and lists its images. Throws when no class folders with images are found. */
export function openImageFolder(root: string, options: ImageFolderOptions = {}): ImageFolderSet {
  const absoluteRoot = path.resolve(root);
  if (!fs.existsSync(absoluteRoot) || !fs.statSync(absoluteRoot).isDirectory()) {
    throw new Error(`Image folder not found: ${absoluteRoot}. Pass a folder that contains one sub-folder of images per class.`);
  }

  const candidates = [absoluteRoot, ...SPLIT_FOLDERS.map((split) => path.join(absoluteRoot, split))];
  const classRoot = candidates.find((dir) => listClassFolders(dir).length > 0);
  if (!classRoot) {
    throw new Error(
      `No class folders with images found in ${absoluteRoot}. Expected <root>/<class>/*.jpg or <root>/{${SPLIT_FOLDERS.join(',')}}/<class>/*.jpg (JPEG or PNG).`,
    );
  }

  const classFolders = listClassFolders(classRoot);
  if (classFolders.length < 2) {
    throw new Error(`Image folder ${classRoot} has ${classFolders.length} class folder; zero-shot classification needs at least 2.`);
  }

  const mapping = readClassNames(absoluteRoot) ?? readClassNames(classRoot) ?? new Map<string, string>();
  const classNames = classFolders.map((folder) => mapping.get(folder) ?? folder.replace(/_/g, ' '));

  const samples: ImageFolderSample[] = [];
  classFolders.forEach((folder, label) => {
    for (const file of listImages(path.join(classRoot, folder))) samples.push({ file, label });
  });

  return { name: options.name ?? path.basename(absoluteRoot), root: absoluteRoot, classRoot, classFolders, classNames, samples };
}

/**
 * Returns at most `limitPerClass` samples per class, drawn with a seeded shuffle so that the
 * same seed gives the same images. Samples stay ordered by class, then file.
 */
export function sampleImageFolder(set: ImageFolderSet, limitPerClass: number | undefined, seed: number): ImageFolderSample[] {
  if (limitPerClass === undefined || limitPerClass <= 0) return [...set.samples];
  const rng = createRng(seed);
  const chosen: ImageFolderSample[] = [];
  for (let label = 0; label < set.classFolders.length; label++) {
    const ofClass = set.samples.filter((s) => s.label === label);
    const picked = shuffleInPlace([...ofClass], rng).slice(0, limitPerClass);
    picked.sort((a, b) => a.file.localeCompare(b.file, 'en'));
    chosen.push(...picked);
  }
  return chosen;
}

function listClassFolders(dir: string): string[] {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) return [];
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && !entry.name.startsWith('.'))
    .map((entry) => entry.name)
    .filter((name) => listImages(path.join(dir, name)).length > 0)
    .sort();
}

function listImages(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((entry) => entry.isFile() && IMAGE_EXTENSIONS.has(path.extname(entry.name).toLowerCase()))
    .map((entry) => path.join(dir, entry.name))
    .sort();
}

function readClassNames(dir: string): Map<string, string> | null {
  const file = path.join(dir, 'classes.txt');
  if (!fs.existsSync(file)) return null;
  const mapping = new Map<string, string>();
  fs.readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      const trimmed = line.trim();
      if (trimmed === '' || trimmed.startsWith('#')) return;
      const match = /^(\S+)\s+(.+)$/.exec(trimmed);
      if (!match) throw new Error(`Invalid line ${i + 1} in ${file}: '${trimmed}'. Expected '<folder> <class name>'.`);
      mapping.set(match[1], match[2].trim());
    });
  return mapping;
}
