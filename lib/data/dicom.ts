// DICOM CT series (one file per axial slice, as LIDC-IDRI ships them), read with dicom-parser.
// Slices are ordered by ImagePositionPatient projected on the slice normal (never by file
// name or InstanceNumber), and stored values are converted to Hounsfield units with
// HU = stored * RescaleSlope + RescaleIntercept.
import fs from 'node:fs';
import path from 'node:path';
import dicomParser from 'dicom-parser';
import { moduleLog } from '../util/log.ts';
import { type Vec3, type Volume, VolumeFormatError } from './volume.ts';

const logger = moduleLog('dicom');

/** Header fields of one DICOM image, enough to place it in its series and decode it. */
export interface DicomSliceHeader {
  file: string;
  /** Modality (0008,0060), e.g. CT, MR or DX; empty when absent. */
  modality: string;
  patientId: string;
  studyUid: string;
  seriesUid: string;
  /** ImagePositionPatient: world position (mm) of the centre of the first transmitted pixel. */
  position: Vec3;
  /** ImageOrientationPatient: world direction of increasing column index, then of increasing row index. */
  rowDirection: Vec3;
  columnDirection: Vec3;
  /** PixelSpacing: [spacing between rows, spacing between columns] in mm. */
  pixelSpacing: [number, number];
  rows: number;
  columns: number;
  slope: number;
  intercept: number;
}

// Uncompressed transfer syntaxes. Compressed ones (JPEG, JPEG 2000, RLE) need a codec.
const LITTLE_ENDIAN_SYNTAXES = new Set(['1.2.840.10008.1.2', '1.2.840.10008.1.2.1']);
const BIG_ENDIAN_SYNTAX = '1.2.840.10008.1.2.2';

interface ParsedDicom {
  header: DicomSliceHeader;
  dataSet: dicomParser.DataSet;
  bytes: Uint8Array;
}

// Bytes read to parse a header without pixels. Headers are usually a few KiB, and a longer one
// is parsed again from the whole file.
const HEADER_PREFIX_BYTES = 64 * 1024;

function parseDicomFile(file: string, withPixels: boolean): ParsedDicom {
  if (!withPixels) {
    try {
      return parseDicomBytes(file, readPrefix(file, HEADER_PREFIX_BYTES), false);
    } catch (error) {
      if (!(error instanceof VolumeFormatError)) throw error;
      // Fall through: the header may extend past the prefix.
    }
  }
  let buffer: Buffer;
  try {
    buffer = fs.readFileSync(file);
  } catch (error) {
    throw new VolumeFormatError(file, `cannot read the DICOM file: ${(error as Error).message}`);
  }
  return parseDicomBytes(file, buffer, withPixels);
}

function readPrefix(file: string, length: number): Buffer {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (error) {
    throw new VolumeFormatError(file, `cannot read the DICOM file: ${(error as Error).message}`);
  }
  try {
    const buffer = Buffer.alloc(Math.min(length, fs.fstatSync(fd).size));
    fs.readSync(fd, buffer, 0, buffer.length, 0);
    return buffer;
  } finally {
    fs.closeSync(fd);
  }
}

function parseDicomBytes(file: string, buffer: Buffer, withPixels: boolean): ParsedDicom {
  const bytes = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.length);
  let dataSet: dicomParser.DataSet;
  try {
    dataSet = dicomParser.parseDicom(bytes, withPixels ? undefined : { untilTag: 'x7fe00010' });
  } catch (error) {
    // dicom-parser throws strings or {exception, dataSet} objects as well as Errors.
    const detail = typeof error === 'string' ? error : ((error as { exception?: string }).exception ?? (error as Error).message);
    throw new VolumeFormatError(file, `not a readable DICOM file (truncated or malformed): ${detail}`);
  }
  return { header: headerFrom(file, dataSet), dataSet, bytes };
}

function headerFrom(file: string, ds: dicomParser.DataSet): DicomSliceHeader {
  const numbers = (tag: string, name: string, count: number): number[] => {
    const value = ds.string(tag);
    if (value === undefined) throw new VolumeFormatError(file, `missing ${name} (${tag}), which is required to place the slice in its series.`);
    const parts = value.split('\\').map(Number);
    if (parts.length !== count || parts.some((x) => !Number.isFinite(x))) {
      throw new VolumeFormatError(file, `invalid ${name} "${value}": expected ${count} numbers separated by backslashes.`);
    }
    return parts;
  };
  const orientation = numbers('x00200037', 'ImageOrientationPatient', 6);
  const spacing = numbers('x00280030', 'PixelSpacing', 2);
  const rows = ds.uint16('x00280010');
  const columns = ds.uint16('x00280011');
  if (!rows || !columns) throw new VolumeFormatError(file, 'missing Rows or Columns (0028,0010/0011).');
  return {
    file,
    modality: (ds.string('x00080060') ?? '').trim(),
    patientId: ds.string('x00100020') ?? '',
    studyUid: ds.string('x0020000d') ?? '',
    seriesUid: ds.string('x0020000e') ?? '',
    position: numbers('x00200032', 'ImagePositionPatient', 3) as Vec3,
    rowDirection: orientation.slice(0, 3) as Vec3,
    columnDirection: orientation.slice(3, 6) as Vec3,
    pixelSpacing: spacing as [number, number],
    rows,
    columns,
    slope: ds.floatString('x00281053') ?? 1,
    intercept: ds.floatString('x00281052') ?? 0,
  };
}

/** Reads the header of one DICOM file, skipping the pixel data. */
export function readDicomHeader(file: string): DicomSliceHeader {
  return parseDicomFile(file, false).header;
}

/** Reads one DICOM slice and returns its values in Hounsfield units, row-major (rows x columns). */
export function readDicomSliceHu(file: string): { header: DicomSliceHeader; hu: Float32Array } {
  const { header, dataSet, bytes } = parseDicomFile(file, true);
  const syntax = (dataSet.string('x00020010') ?? '1.2.840.10008.1.2').replace(/\0/g, '').trim();
  const bigEndian = syntax === BIG_ENDIAN_SYNTAX;
  if (!bigEndian && !LITTLE_ENDIAN_SYNTAXES.has(syntax)) {
    throw new VolumeFormatError(file, `compressed transfer syntax ${syntax} is not supported. Decompress the series first (for example with dcmdjpeg or gdcmconv --raw).`);
  }
  const samplesPerPixel = dataSet.uint16('x00280002') ?? 1;
  if (samplesPerPixel !== 1) throw new VolumeFormatError(file, `SamplesPerPixel = ${samplesPerPixel}, but only greyscale CT/MR slices are supported.`);
  const bitsAllocated = dataSet.uint16('x00280100') ?? 16;
  const signed = (dataSet.uint16('x00280103') ?? 0) === 1;
  const pixelElement = dataSet.elements.x7fe00010;
  if (!pixelElement) throw new VolumeFormatError(file, 'no PixelData element (7FE0,0010).');

  const count = header.rows * header.columns;
  const bytesPerPixel = bitsAllocated / 8;
  if (bitsAllocated !== 8 && bitsAllocated !== 16) throw new VolumeFormatError(file, `BitsAllocated = ${bitsAllocated}, but only 8 and 16 are supported.`);
  const available = Math.min(pixelElement.length, bytes.length - pixelElement.dataOffset);
  if (available < count * bytesPerPixel) {
    throw new VolumeFormatError(file, `truncated PixelData: ${header.rows}x${header.columns} pixels of ${bitsAllocated} bits need ${count * bytesPerPixel} bytes, the file has ${Math.max(available, 0)}.`);
  }

  const view = new DataView(bytes.buffer, bytes.byteOffset + pixelElement.dataOffset, count * bytesPerPixel);
  const hu = new Float32Array(count);
  for (let p = 0; p < count; p++) {
    let stored: number;
    if (bitsAllocated === 8) stored = signed ? view.getInt8(p) : view.getUint8(p);
    else stored = signed ? view.getInt16(2 * p, !bigEndian) : view.getUint16(2 * p, !bigEndian);
    hu[p] = stored * header.slope + header.intercept;
  }
  return { header, hu };
}

/** A series found on disk: its slice headers in ascending position along the slice normal. */
export interface DicomSeries {
  seriesUid: string;
  patientId: string;
  slices: DicomSliceHeader[];
  /** Position of each slice along the normal (mm), ascending. */
  positions: number[];
  dims: [number, number, number];
  spacing: [number, number, number];
  origin: Vec3;
  direction: [Vec3, Vec3, Vec3];
}

/**
 * Lists every file under `dir` (recursively, following symbolic links) that looks like DICOM:
 * a .dcm name or the DICM magic at byte 128.
 */
export function findDicomFiles(dir: string): string[] {
  const found: string[] = [];
  walkFiles(dir, (file) => {
    if (/\.dcm$/i.test(file) || hasDicomMagic(file)) found.push(file);
  });
  return found.sort();
}

/**
 * Calls `visit` for every file under `dir`, following symbolic links to folders (each real
 * folder once, so link cycles end). Hidden entries and folders for which `skipFolder` returns
 * true are left out.
 */
export function walkFiles(dir: string, visit: (file: string) => void, skipFolder: (name: string) => boolean = () => false): void {
  const seen = new Set<string>();
  const walk = (folder: string) => {
    const real = fs.realpathSync(folder);
    if (seen.has(real)) return;
    seen.add(real);
    for (const entry of fs.readdirSync(folder, { withFileTypes: true })) {
      if (entry.name.startsWith('.')) continue;
      const full = path.join(folder, entry.name);
      const stats = entry.isSymbolicLink() ? fs.statSync(full, { throwIfNoEntry: false }) : entry;
      if (!stats) continue; // A dangling link.
      if (stats.isDirectory()) {
        if (!skipFolder(entry.name)) walk(full);
      } else if (stats.isFile()) {
        visit(full);
      }
    }
  };
  walk(dir);
}

function hasDicomMagic(file: string): boolean {
  if (/\.(txt|csv|xml|json|png|jpg|mhd|raw|nii|gz|md)$/i.test(file)) return false;
  const fd = fs.openSync(file, 'r');
  try {
    const magic = Buffer.alloc(4);
    return fs.readSync(fd, magic, 0, 4, 128) === 4 && magic.toString('latin1') === 'DICM';
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Groups DICOM files by SeriesInstanceUID and orders each series by slice position. An
 * unreadable file raises its VolumeFormatError, unless `onUnreadable` is given, which then
 * receives the error while the file is left out.
 */
export function groupDicomSeries(files: string[], onUnreadable?: (error: VolumeFormatError) => void): DicomSeries[] {
  const bySeries = new Map<string, DicomSliceHeader[]>();
  for (const file of files) {
    let header: DicomSliceHeader;
    try {
      header = readDicomHeader(file);
      if (!header.seriesUid) throw new VolumeFormatError(file, 'missing SeriesInstanceUID (0020,000E).');
    } catch (error) {
      if (!onUnreadable || !(error instanceof VolumeFormatError)) throw error;
      onUnreadable(error);
      continue;
    }
    const list = bySeries.get(header.seriesUid) ?? [];
    list.push(header);
    bySeries.set(header.seriesUid, list);
  }
  return [...bySeries.values()].map(seriesFrom);
}

/** Orders the slices of one series by position and derives the volume geometry, checking that the slices are consistent. */
export function seriesFrom(headers: DicomSliceHeader[]): DicomSeries {
  const first = headers[0];
  const normal = cross(first.rowDirection, first.columnDirection);
  for (const h of headers) {
    if (h.rows !== first.rows || h.columns !== first.columns) {
      throw new VolumeFormatError(h.file, `slice size ${h.rows}x${h.columns} differs from ${first.rows}x${first.columns} in ${first.file} of the same series.`);
    }
    const sameOrientation = [...h.rowDirection, ...h.columnDirection].every((v, i) => Math.abs(v - [...first.rowDirection, ...first.columnDirection][i]) < 1e-4);
    if (!sameOrientation) throw new VolumeFormatError(h.file, `ImageOrientationPatient differs from ${first.file}, but a series must be one stack of parallel slices.`);
  }

  const sorted = headers.map((h) => ({ h, z: dot(h.position, normal) })).sort((a, b) => a.z - b.z);
  for (let s = 1; s < sorted.length; s++) {
    if (Math.abs(sorted[s].z - sorted[s - 1].z) < 1e-3) {
      throw new VolumeFormatError(sorted[s].h.file, `duplicate slice position ${sorted[s].z.toFixed(3)} mm (also in ${sorted[s - 1].h.file}). Remove the duplicate file.`);
    }
  }
  const positions = sorted.map((s) => s.z);
  const gaps = positions.slice(1).map((z, s) => z - positions[s]);
  const sliceSpacing = gaps.length ? median(gaps) : 1;
  const irregular = gaps.filter((gap) => Math.abs(gap - sliceSpacing) > 0.01 * sliceSpacing).length;
  if (irregular > 0) {
    // The volume assumes one spacing, so world z of slices after a gap is off by the gap's excess.
    logger.warn({ series: first.seriesUid, irregular, sliceSpacing }, 'slice spacing is not uniform (missing slices?): using the median spacing');
  }
  const slices = sorted.map((s) => s.h);
  return {
    seriesUid: first.seriesUid,
    patientId: first.patientId,
    slices,
    positions,
    dims: [first.columns, first.rows, slices.length],
    spacing: [first.pixelSpacing[1], first.pixelSpacing[0], sliceSpacing],
    origin: slices[0].position,
    direction: [first.rowDirection, first.columnDirection, normal],
  };
}

/** Reads a whole DICOM series into a volume of Hounsfield units (x fastest, slices ascending along the normal). */
export function readDicomSeries(series: DicomSeries): Volume {
  const [nx, ny, nz] = series.dims;
  const data = new Float32Array(nx * ny * nz);
  series.slices.forEach((header, k) => data.set(readDicomSliceHu(header.file).hu, k * nx * ny));
  return { data, dims: series.dims, spacing: series.spacing, origin: series.origin, direction: series.direction, source: path.dirname(series.slices[0].file) };
}

function cross(a: Vec3, b: Vec3): Vec3 {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}

function dot(a: Vec3, b: Vec3): number {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
