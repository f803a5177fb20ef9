// NIfTI-1/NIfTI-2 volumes (.nii, .nii.gz), the format of BraTS, read with nifti-reader-js.
// Values are scaled by scl_slope/scl_inter when scl_slope is non-zero, as the NIfTI standard
// specifies. Geometry comes from the sform when sform_code > 0, else from the qform (the
// affine nifti-reader-js builds), else from pixdim alone.
import fs from 'node:fs';
import zlib from 'node:zlib';
import * as nifti from 'nifti-reader-js';
import { type Vec3, type Volume, type VoxelArray, VolumeFormatError, voxelCount } from './volume.ts';

export interface NiftiVolume extends Volume {
  /** NIfTI datatype name of the stored voxels, e.g. 'float32'. */
  datatype: string;
  /** Direction each voxel axis points to in RAS+ world space, e.g. 'LPS' or 'RAS'. */
  orientation: string;
}

const DATATYPES: Record<number, { name: string; bytes: number }> = {
  2: { name: 'uint8', bytes: 1 },
  4: { name: 'int16', bytes: 2 },
  8: { name: 'int32', bytes: 4 },
  16: { name: 'float32', bytes: 4 },
  64: { name: 'float64', bytes: 8 },
  256: { name: 'int8', bytes: 1 },
  512: { name: 'uint16', bytes: 2 },
  768: { name: 'uint32', bytes: 4 },
};

/** Reads a .nii or .nii.gz file into a volume. Scaled or floating-point data becomes Float32Array. */
export function readNifti(file: string): NiftiVolume {
  const buffer = readMaybeGzip(file);
  const data = buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.length) as ArrayBuffer;
  if (!nifti.isNIFTI(data)) throw new VolumeFormatError(file, 'not a NIfTI-1 or NIfTI-2 file (no "n+1"/"ni1"/"n+2" magic in the header).');

  let header: nifti.NIFTI1 | nifti.NIFTI2;
  try {
    header = nifti.readHeader(data);
  } catch (error) {
    throw new VolumeFormatError(file, `malformed NIfTI header: ${(error as Error).message}`);
  }
  const nDims = header.dims[0];
  const dims = header.dims.slice(1, 4);
  const extra = header.dims.slice(4, 1 + Math.max(nDims, 3));
  if (nDims < 3 || extra.some((d) => d > 1)) {
    throw new VolumeFormatError(file, `dim = [${header.dims.slice(0, 1 + nDims).join(', ')}], but only single 3-D volumes are supported (no time series or vector images).`);
  }
  const count = voxelCount(dims, file);
  const type = DATATYPES[header.datatypeCode];
  if (!type) throw new VolumeFormatError(file, `unsupported NIfTI datatype ${header.datatypeCode} (${header.getDatatypeCodeString(header.datatypeCode)}).`);

  const offset = header.vox_offset;
  if (!Number.isInteger(offset) || offset < 0) throw new VolumeFormatError(file, `invalid vox_offset ${offset}: expected a non-negative whole number of bytes (at least 352 in a single .nii file).`);
  const needed = count * type.bytes;
  if (offset + needed > data.byteLength) {
    throw new VolumeFormatError(file, `truncated voxel data: ${dims.join('x')} ${type.name} voxels need ${needed} bytes from offset ${offset}, the file has ${Math.max(data.byteLength - offset, 0)}.`);
  }
  const raw = decode(new DataView(data, offset, needed), header.datatypeCode, count, header.littleEndian);

  const slope = header.scl_slope;
  const intercept = header.scl_inter;
  const scaled = Number.isFinite(slope) && slope !== 0 && !(slope === 1 && (intercept === 0 || !Number.isFinite(intercept)));
  let values: VoxelArray = raw;
  if (scaled) {
    const out = new Float32Array(count);
    const b = Number.isFinite(intercept) ? intercept : 0;
    for (let i = 0; i < count; i++) out[i] = raw[i] * slope + b;
    values = out;
  } else if (raw instanceof Float64Array) {
    values = Float32Array.from(raw);
  }

  const geometry = geometryFrom(header, file);
  return { data: values, dims: dims as [number, number, number], ...geometry, source: file, datatype: type.name, orientation: axisCodes(geometry.direction) };
}

function readMaybeGzip(file: string): Buffer {
  let buffer: Buffer;
  try {
    buffer = fs.readFileSync(file);
  } catch (error) {
    throw new VolumeFormatError(file, `cannot read the NIfTI file: ${(error as Error).message}`);
  }
  if (buffer.length >= 2 && buffer[0] === 0x1f && buffer[1] === 0x8b) {
    try {
      return zlib.gunzipSync(buffer);
    } catch (error) {
      throw new VolumeFormatError(file, `the gzip stream is truncated or corrupt: ${(error as Error).message}`);
    }
  }
  return buffer;
}

const TYPED_ARRAYS: Record<number, { new (buffer: ArrayBuffer, offset: number, length: number): VoxelArray }> = {
  2: Uint8Array,
  256: Int8Array,
  4: Int16Array,
  512: Uint16Array,
  8: Int32Array,
  768: Uint32Array,
  16: Float32Array,
  64: Float64Array,
};

// Node runs on little-endian hosts (x64, arm64), so little-endian data at an aligned offset is
// copied as a typed array; anything else is decoded element by element.
function decode(view: DataView, code: number, count: number, littleEndian: boolean): VoxelArray {
  const bytes = DATATYPES[code].bytes;
  if (littleEndian && view.byteOffset % bytes === 0) {
    return new TYPED_ARRAYS[code](view.buffer as ArrayBuffer, view.byteOffset, count).slice();
  }
  switch (code) {
    case 2:
      return new Uint8Array(view.buffer.slice(view.byteOffset, view.byteOffset + count));
    case 256:
      return new Int8Array(view.buffer.slice(view.byteOffset, view.byteOffset + count));
    case 4: {
      const out = new Int16Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt16(2 * i, littleEndian);
      return out;
    }
    case 512: {
      const out = new Uint16Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getUint16(2 * i, littleEndian);
      return out;
    }
    case 8: {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt32(4 * i, littleEndian);
      return out;
    }
    case 768: {
      const out = new Uint32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getUint32(4 * i, littleEndian);
      return out;
    }
    case 16: {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, littleEndian);
      return out;
    }
    default: {
      const out = new Float64Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat64(8 * i, littleEndian);
      return out;
    }
  }
}

// NIfTI world space is RAS+: +x points to the subject's right, +y anterior, +z superior (mm).
// The affine maps (i, j, k) to world, and column a of its 3x3 part is spacing_a * direction[a].
function geometryFrom(header: nifti.NIFTI1 | nifti.NIFTI2, file: string): Pick<Volume, 'spacing' | 'origin' | 'direction'> {
  const pixdim = header.pixDims.slice(1, 4).map((d) => (d > 0 ? d : 1));
  const useAffine = header.sform_code > 0 || header.qform_code > 0;
  if (!useAffine) {
    // Method 1 of the NIfTI standard: no orientation, scale only.
    return { spacing: pixdim as Vec3, origin: [0, 0, 0], direction: [[1, 0, 0], [0, 1, 0], [0, 0, 1]] };
  }
  const affine = header.affine;
  const spacing: number[] = [];
  const direction: Vec3[] = [];
  for (let axis = 0; axis < 3; axis++) {
    const column: Vec3 = [affine[0][axis], affine[1][axis], affine[2][axis]];
    const length = Math.hypot(...column);
    if (!(length > 0)) throw new VolumeFormatError(file, `the ${header.sform_code > 0 ? 'sform' : 'qform'} has a zero column for axis ${axis}, so the orientation is invalid.`);
    spacing.push(length);
    direction.push(column.map((v) => v / length) as Vec3);
  }
  const origin: Vec3 = [affine[0][3], affine[1][3], affine[2][3]];
  if (![...spacing, ...origin, ...direction.flat()].every(Number.isFinite)) {
    throw new VolumeFormatError(file, `the ${header.sform_code > 0 ? 'sform' : 'qform'} contains non-finite values, so the voxel-to-world mapping is invalid.`);
  }
  return { spacing: spacing as Vec3, origin, direction: direction as [Vec3, Vec3, Vec3] };
}

/** Returns the axis codes of the voxel axes, as nibabel's aff2axcodes does: 'R' means index i grows toward the subject's right. */
function axisCodes(direction: [Vec3, Vec3, Vec3]): string {
  const positive = ['R', 'A', 'S'];
  const negative = ['L', 'P', 'I'];
  return direction
    .map((axis) => {
      const c = [0, 1, 2].reduce((best, k) => (Math.abs(axis[k]) > Math.abs(axis[best]) ? k : best), 0);
      return axis[c] >= 0 ? positive[c] : negative[c];
    })
    .join('');
}
