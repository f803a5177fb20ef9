// MetaImage (.mhd header + .raw data, or a single .mha), the format LUNA16 ships its CT
// scans in. Follows the MetaIO conventions used by ITK/SimpleITK: the header is "Key = Value"
// lines; TransformMatrix lists the world direction of axis 0, then axis 1, then axis 2;
// Offset (alias Position, Origin) is the world position of voxel (0, 0, 0).
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { IDENTITY_DIRECTION, type Vec3, type Volume, type VoxelArray, VolumeFormatError, voxelCount } from './volume.ts';

export interface MetaImageHeader {
  /** The .mhd or .mha file. */
  file: string;
  fields: Record<string, string>;
  dims: [number, number, number];
  spacing: [number, number, number];
  origin: [number, number, number];
  direction: [Vec3, Vec3, Vec3];
  elementType: MetaElementType;
  littleEndian: boolean;
  compressed: boolean;
  /** File holding the voxel data (the .mha itself when ElementDataFile = LOCAL). */
  dataFile: string;
  /** Byte offset of the first voxel in dataFile. */
  dataOffset: number;
  /** Bytes of voxel data on disk (compressed size when compressed). */
  dataBytes: number;
}

type MetaElementType = 'MET_CHAR' | 'MET_UCHAR' | 'MET_SHORT' | 'MET_USHORT' | 'MET_INT' | 'MET_UINT' | 'MET_FLOAT' | 'MET_DOUBLE';

const ELEMENT_BYTES: Record<MetaElementType, number> = {
  MET_CHAR: 1,
  MET_UCHAR: 1,
  MET_SHORT: 2,
  MET_USHORT: 2,
  MET_INT: 4,
  MET_UINT: 4,
  MET_FLOAT: 4,
  MET_DOUBLE: 8,
};

// Maximum header size searched for "ElementDataFile". A file without it in this range is not a MetaImage.
const MAX_HEADER_BYTES = 64 * 1024;

/** Parses the header of a .mhd or .mha file and locates its voxel data, without reading the data. */
export function readMetaImageHeader(file: string): MetaImageHeader {
  const { text, headerBytes } = readHeaderText(file);
  const fields: Record<string, string> = {};
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq < 0) throw new VolumeFormatError(file, `malformed header line "${line}": expected "Key = Value".`);
    fields[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  }

  const nDims = parseIntField(file, fields, 'NDims');
  if (nDims !== 3) throw new VolumeFormatError(file, `NDims = ${nDims}, but only 3-D images are supported.`);
  const channels = fields.ElementNumberOfChannels === undefined ? 1 : parseIntField(file, fields, 'ElementNumberOfChannels');
  if (channels !== 1) throw new VolumeFormatError(file, `ElementNumberOfChannels = ${channels}, but only single-channel images are supported.`);

  const dims = parseVector(file, fields, 'DimSize', 3) as [number, number, number];
  voxelCount(dims, file);
  const spacing = (fields.ElementSpacing !== undefined ? parseVector(file, fields, 'ElementSpacing', 3) : [1, 1, 1]) as [number, number, number];
  if (spacing.some((s) => !(s > 0))) throw new VolumeFormatError(file, `invalid ElementSpacing "${fields.ElementSpacing}": each spacing must be > 0 mm.`);
  const originKey = ['Offset', 'Position', 'Origin'].find((k) => fields[k] !== undefined);
  const origin = (originKey ? parseVector(file, fields, originKey, 3) : [0, 0, 0]) as [number, number, number];
  const directionKey = ['TransformMatrix', 'Rotation', 'Orientation'].find((k) => fields[k] !== undefined);
  const direction = directionKey ? parseDirection(file, fields, directionKey) : IDENTITY_DIRECTION;

  const elementType = fields.ElementType as MetaElementType;
  if (!(elementType in ELEMENT_BYTES)) {
    throw new VolumeFormatError(file, `unsupported ElementType "${fields.ElementType}": expected one of ${Object.keys(ELEMENT_BYTES).join(', ')}.`);
  }
  const msb = fields.BinaryDataByteOrderMSB ?? fields.ElementByteOrderMSB ?? 'False';
  const compressed = /^true$/i.test(fields.CompressedData ?? 'False');

  const dataName = fields.ElementDataFile;
  if (dataName === undefined) throw new VolumeFormatError(file, 'missing ElementDataFile (it must be the last header field).');
  if (dataName === 'LIST' || dataName.includes('%')) {
    throw new VolumeFormatError(file, `ElementDataFile = ${dataName}: multi-file MetaImage data is not supported, so convert it to a single .raw file.`);
  }
  const local = dataName === 'LOCAL';
  const dataFile = local ? file : path.resolve(path.dirname(file), dataName);
  if (!fs.existsSync(dataFile)) throw new VolumeFormatError(file, `data file ${dataFile} named by ElementDataFile was not found.`);
  const fileBytes = fs.statSync(dataFile).size;

  const expectedBytes = voxelCount(dims, file) * ELEMENT_BYTES[elementType];
  let dataBytes = expectedBytes;
  if (compressed) dataBytes = Number(fields.CompressedDataSize ?? fileBytes - (local ? headerBytes : 0));
  let dataOffset = local ? headerBytes : 0;
  const headerSize = fields.HeaderSize === undefined ? 0 : Number(fields.HeaderSize);
  if (headerSize === -1) dataOffset = fileBytes - dataBytes; // -1: the data is the last dataBytes of the file.
  else if (headerSize > 0) dataOffset += headerSize;
  if (compressed && !(dataBytes > 0)) throw new VolumeFormatError(file, `invalid CompressedDataSize "${fields.CompressedDataSize}".`);
  if (dataOffset < 0 || dataOffset + dataBytes > fileBytes) {
    throw new VolumeFormatError(
      dataFile,
      `truncated voxel data: DimSize ${dims.join('x')} of ${elementType} needs ${dataBytes} bytes from offset ${dataOffset}, but the file has ${fileBytes} bytes.`,
    );
  }

  return { file, fields, dims, spacing, origin, direction, elementType, littleEndian: !/^true$/i.test(msb), compressed, dataFile, dataOffset, dataBytes };
}

/** Reads a whole MetaImage volume. Voxel values are returned as stored (LUNA16: int16 Hounsfield units). */
export function readMetaImage(file: string): Volume {
  const header = readMetaImageHeader(file);
  let bytes = readBytes(header.dataFile, header.dataOffset, header.dataBytes);
  if (header.compressed) {
    try {
      bytes = zlib.inflateSync(bytes);
    } catch (error) {
      throw new VolumeFormatError(header.dataFile, `CompressedData = True but the zlib stream failed to inflate: ${(error as Error).message}`);
    }
    const expected = voxelCount(header.dims, file) * ELEMENT_BYTES[header.elementType];
    if (bytes.length !== expected) {
      throw new VolumeFormatError(header.dataFile, `inflated data has ${bytes.length} bytes, but DimSize ${header.dims.join('x')} of ${header.elementType} needs ${expected}.`);
    }
  }
  return volumeFrom(header, decodeElements(bytes, header.elementType, header.littleEndian));
}

/**
 * Reads axial slice k only (nx*ny values), so a sampler touching a few slices of a 100 MB
 * LUNA16 scan reads kilobytes. Compressed files are inflated whole.
 */
export function readMetaImageSlice(header: MetaImageHeader, k: number): VoxelArray {
  const [nx, ny, nz] = header.dims;
  if (!Number.isInteger(k) || k < 0 || k >= nz) throw new RangeError(`${header.file}: slice index ${k} is out of range [0, ${nz - 1}].`);
  if (header.compressed) {
    const whole = readMetaImage(header.file).data;
    return whole.slice(k * nx * ny, (k + 1) * nx * ny);
  }
  const sliceBytes = nx * ny * ELEMENT_BYTES[header.elementType];
  const bytes = readBytes(header.dataFile, header.dataOffset + k * sliceBytes, sliceBytes);
  return decodeElements(bytes, header.elementType, header.littleEndian);
}

/** Returns the volume geometry of a header with the given voxel data. */
export function volumeFrom(header: MetaImageHeader, data: VoxelArray): Volume {
  return { data, dims: header.dims, spacing: header.spacing, origin: header.origin, direction: header.direction, source: header.file };
}

function readHeaderText(file: string): { text: string; headerBytes: number } {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (error) {
    throw new VolumeFormatError(file, `cannot open the MetaImage header: ${(error as Error).message}`);
  }
  try {
    const buffer = Buffer.alloc(Math.min(MAX_HEADER_BYTES, fs.fstatSync(fd).size));
    fs.readSync(fd, buffer, 0, buffer.length, 0);
    // The header ends after the line holding ElementDataFile; binary data may follow (.mha).
    const latin = buffer.toString('latin1');
    const match = /ElementDataFile\s*=[^\n]*\n?/.exec(latin);
    if (!match) throw new VolumeFormatError(file, 'no ElementDataFile line in the first 64 KiB; this is not a MetaImage header.');
    const headerBytes = match.index + match[0].length;
    return { text: latin.slice(0, headerBytes), headerBytes };
  } finally {
    fs.closeSync(fd);
  }
}

function readBytes(file: string, offset: number, length: number): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const buffer = Buffer.alloc(length);
    const read = fs.readSync(fd, buffer, 0, length, offset);
    if (read !== length) throw new VolumeFormatError(file, `truncated voxel data: expected ${length} bytes at offset ${offset}, read ${read}.`);
    return buffer;
  } finally {
    fs.closeSync(fd);
  }
}

const TYPED_ARRAYS: Record<MetaElementType, { new (buffer: ArrayBuffer, offset: number, length: number): VoxelArray }> = {
  MET_CHAR: Int8Array,
  MET_UCHAR: Uint8Array,
  MET_SHORT: Int16Array,
  MET_USHORT: Uint16Array,
  MET_INT: Int32Array,
  MET_UINT: Uint32Array,
  MET_FLOAT: Float32Array,
  MET_DOUBLE: Float64Array,
};

// Node runs on little-endian hosts (x64, arm64), so little-endian data at an aligned offset is
// copied as a typed array; anything else is decoded element by element.
function decodeElements(bytes: Buffer, type: MetaElementType, littleEndian: boolean): VoxelArray {
  const n = bytes.length / ELEMENT_BYTES[type];
  if (littleEndian && bytes.byteOffset % ELEMENT_BYTES[type] === 0) {
    return new TYPED_ARRAYS[type](bytes.buffer as ArrayBuffer, bytes.byteOffset, n).slice();
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  switch (type) {
    case 'MET_CHAR':
      return Int8Array.from({ length: n }, (_, i) => view.getInt8(i));
    case 'MET_UCHAR':
      return Uint8Array.from(bytes);
    case 'MET_SHORT': {
      const out = new Int16Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getInt16(2 * i, littleEndian);
      return out;
    }
    case 'MET_USHORT': {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getUint16(2 * i, littleEndian);
      return out;
    }
    case 'MET_INT': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getInt32(4 * i, littleEndian);
      return out;
    }
    case 'MET_UINT': {
      const out = new Uint32Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getUint32(4 * i, littleEndian);
      return out;
    }
    case 'MET_FLOAT': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, littleEndian);
      return out;
    }
    case 'MET_DOUBLE': {
      const out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(8 * i, littleEndian);
      return out;
    }
  }
}

function parseIntField(file: string, fields: Record<string, string>, key: string): number {
  const value = fields[key];
  if (value === undefined) throw new VolumeFormatError(file, `missing header field ${key}.`);
  const n = Number(value);
  if (!Number.isInteger(n)) throw new VolumeFormatError(file, `invalid ${key} "${value}": expected an integer.`);
  return n;
}

function parseVector(file: string, fields: Record<string, string>, key: string, length: number): number[] {
  const value = fields[key];
  if (value === undefined) throw new VolumeFormatError(file, `missing header field ${key}.`);
  const numbers = value.split(/\s+/).map(Number);
  if (numbers.length !== length || numbers.some((x) => !Number.isFinite(x))) {
    throw new VolumeFormatError(file, `invalid ${key} "${value}": expected ${length} numbers.`);
  }
  return numbers;
}

function parseDirection(file: string, fields: Record<string, string>, key: string): [Vec3, Vec3, Vec3] {
  const m = parseVector(file, fields, key, 9);
  return [m.slice(0, 3) as Vec3, m.slice(3, 6) as Vec3, m.slice(6, 9) as Vec3];
}
