// 2-D helpers for LUNA16 patches: a coarse lung mask of one axial CT slice, and a square
// patch cut from a slice around a centre.

/** HU below which a pixel counts as air or lung (the threshold common in LUNA16 pipelines). */
export const AIR_THRESHOLD_HU = -320;

/** HU used outside the scanned field: air. */
export const OUTSIDE_HU = -1024;

/**
 * Marks lung pixels of an axial slice (row-major, width x height, HU): pixels below
 * AIR_THRESHOLD_HU that are not connected to the image border. Air around the body touches
 * the border and is removed by a flood fill, which leaves the lungs (and the trachea).
 */
export function lungMask2d(hu: Float32Array, width: number, height: number): Uint8Array {
  const isAir = (p: number) => hu[p] < AIR_THRESHOLD_HU;
  const outside = new Uint8Array(width * height);
  const stack: number[] = [];
  const push = (p: number) => {
    if (!outside[p] && isAir(p)) {
      outside[p] = 1;
      stack.push(p);
    }
  };
  for (let x = 0; x < width; x++) {
    push(x);
    push((height - 1) * width + x);
  }
  for (let y = 0; y < height; y++) {
    push(y * width);
    push(y * width + width - 1);
  }
  while (stack.length > 0) {
    const p = stack.pop()!;
    const x = p % width;
    const y = (p - x) / width;
    if (x > 0) push(p - 1);
    if (x < width - 1) push(p + 1);
    if (y > 0) push(p - width);
    if (y < height - 1) push(p + width);
  }

  const mask = new Uint8Array(width * height);
  for (let p = 0; p < mask.length; p++) mask[p] = isAir(p) && !outside[p] ? 1 : 0;
  return mask;
}

/**
 * Cuts a size x size patch (pixels) from a row-major slice, so that the pixel nearest
 * (`centerX`, `centerY`) lands at patch position (floor(size/2), floor(size/2)). Pixels
 * outside the slice are filled with OUTSIDE_HU.
 */
export function cropPatch(hu: Float32Array, width: number, height: number, centerX: number, centerY: number, size: number): Float32Array {
  const patch = new Float32Array(size * size);
  const left = Math.round(centerX) - Math.floor(size / 2);
  const top = Math.round(centerY) - Math.floor(size / 2);
  for (let y = 0; y < size; y++) {
    const sourceY = top + y;
    for (let x = 0; x < size; x++) {
      const sourceX = left + x;
      const inside = sourceX >= 0 && sourceX < width && sourceY >= 0 && sourceY < height;
      patch[y * size + x] = inside ? hu[sourceY * width + sourceX] : OUTSIDE_HU;
    }
  }
  return patch;
}
