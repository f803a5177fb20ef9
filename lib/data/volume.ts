// A 3-D medical image in memory, with the geometry that maps voxel indices to patient
// (world) coordinates in millimetres. The MetaImage, DICOM and NIfTI readers all return this.
//
// Voxel layout: x (column i) varies fastest, then y (row j), then z (slice k), as in
// .raw files, NIfTI and a stacked DICOM series. Index (i, j, k) lives at i + nx*(j + ny*k).
// World position: p = origin + sum over axes a of index_a * spacing_a * direction[a],
// where direction[a] is the unit vector of axis a in world coordinates (ITK convention).

export type VoxelArray = Float32Array | Int16Array | Uint8Array | Uint16Array | Int32Array | Int8Array | Uint32Array | Float64Array;

export interface Volume {
  /** Voxel values after rescaling (Hounsfield units for CT, scaled intensities for MRI). */
  data: VoxelArray;
  /** [nx, ny, nz] in voxels. */
  dims: [number, number, number];
  /** Voxel size along each axis in mm. */
  spacing: [number, number, number];
  /** World position of voxel (0, 0, 0) in mm. */
  origin: [number, number, number];
  /** direction[a] is the world unit vector of voxel axis a (a = 0: i, 1: j, 2: k). */
  direction: [Vec3, Vec3, Vec3];
  /** File or folder the volume came from, for error messages. */
  source: string;
}

export type Vec3 = [number, number, number];

export const IDENTITY_DIRECTION: [Vec3, Vec3, Vec3] = [
  [1, 0, 0],
  [0, 1, 0],
  [0, 0, 1],
];

/** Converts a continuous voxel index (i, j, k) to world coordinates in mm. */
export function voxelToWorld(volume: Pick<Volume, 'spacing' | 'origin' | 'direction'>, index: Vec3): Vec3 {
  const world: Vec3 = [...volume.origin];
  for (let axis = 0; axis < 3; axis++) {
    const step = index[axis] * volume.spacing[axis];
    for (let c = 0; c < 3; c++) world[c] += step * volume.direction[axis][c];
  }
  return world;
}

/**
 * Converts world coordinates in mm to a continuous voxel index (i, j, k), so a nodule centre
 * from annotations.csv lands on its column, row and slice. Solves origin + M * index = world,
 * where column a of M is spacing_a * direction[a].
 */
export function worldToVoxel(volume: Pick<Volume, 'spacing' | 'origin' | 'direction' | 'source'>, world: Vec3): Vec3 {
  const m: number[][] = [0, 1, 2].map((row) => [0, 1, 2].map((axis) => volume.spacing[axis] * volume.direction[axis][row]));
  const inverse = invert3x3(m);
  if (!inverse) {
    throw new Error(`${volume.source}: the direction matrix is singular, so world coordinates cannot be mapped to voxels. Check TransformMatrix / ImageOrientationPatient / the NIfTI affine.`);
  }
  const d = [0, 1, 2].map((c) => world[c] - volume.origin[c]);
  return [0, 1, 2].map((r) => inverse[r][0] * d[0] + inverse[r][1] * d[1] + inverse[r][2] * d[2]) as Vec3;
}

function invert3x3(m: number[][]): number[][] | null {
  const [[a, b, c], [d, e, f], [g, h, i]] = m;
  const det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g);
  if (!Number.isFinite(det) || Math.abs(det) < 1e-12) return null;
  return [
    [(e * i - f * h) / det, (c * h - b * i) / det, (b * f - c * e) / det],
    [(f * g - d * i) / det, (a * i - c * g) / det, (c * d - a * f) / det],
    [(d * h - e * g) / det, (b * g - a * h) / det, (a * e - b * d) / det],
  ];
}

/** Copies axial slice k (all i, j) into a new Float32Array of nx*ny values, row-major. */
export function axialSlice(volume: Volume, k: number): Float32Array {
  const [nx, ny, nz] = volume.dims;
  if (!Number.isInteger(k) || k < 0 || k >= nz) {
    throw new RangeError(`${volume.source}: slice index ${k} is out of range [0, ${nz - 1}].`);
  }
  const size = nx * ny;
  return Float32Array.from(volume.data.subarray(k * size, (k + 1) * size));
}

/** Returns the number of voxels a volume with these dimensions has, checking each is a positive integer. */
export function voxelCount(dims: number[], source: string): number {
  for (const d of dims) {
    if (!Number.isInteger(d) || d <= 0) {
      throw new VolumeFormatError(source, `invalid image dimensions [${dims.join(', ')}]: each must be a positive integer.`);
    }
  }
  return dims.reduce((a, b) => a * b, 1);
}

/** Error for a medical image file that is truncated, malformed or in an unsupported variant. */
export class VolumeFormatError extends Error {
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`${file}: ${problem}`);
    this.name = 'VolumeFormatError';
  }
}
