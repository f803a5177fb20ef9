// Lossless compact storage of preprocessed pixels for the pixel cache. CLIP preprocessing of an
// 8-bit image yields, per channel c, float32 values normalise(u, c) of bytes u in 0..255. Those
// values are stored as the bytes u (4 times smaller), and as one plane when the three channels
// come from the same grey bytes (12 times smaller, the case for ChestX-ray14). At 224 px the
// 112,120 ChestX-ray14 images then take 112,120 * 224 * 224 bytes = 5.6 GB instead of 67 GB.
//
// Encoding checks every value: it keeps the bytes only when decoding reproduces each float32
// bit for bit, and otherwise (16-bit images, another normalisation) stores the float32 values.

export type PixelEncoding = 'float32' | 'uint8-rgb' | 'uint8-grey';

export const ENCODING_CODES: Record<PixelEncoding, number> = { float32: 0, 'uint8-rgb': 1, 'uint8-grey': 2 };

export interface Normalisation {
  mean: [number, number, number];
  std: [number, number, number];
}

/**
 * Returns the 256 float32 values a byte maps to in channel c, computed in float32 steps as
 * torchvision's ToTensor and Normalize do: ((u / 255) - mean) / std.
 */
export function channelTable(mean: number, std: number): Float32Array {
  const m = Math.fround(mean);
  const s = Math.fround(std);
  const table = new Float32Array(256);
  for (let u = 0; u < 256; u++) table[u] = Math.fround(Math.fround(Math.fround(u / 255) - m) / s);
  return table;
}

/** Encodes CHW pixels (3 planes) as compactly as decoding bit for bit allows. */
export function encodePixels(pixels: Float32Array, norm: Normalisation | null): { encoding: PixelEncoding; data: Uint8Array } {
  const asFloat = { encoding: 'float32' as const, data: new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.byteLength) };
  if (!norm || pixels.length % 3 !== 0) return asFloat;

  const plane = pixels.length / 3;
  const bytes = new Uint8Array(pixels.length);
  const pixelBits = new Uint32Array(pixels.buffer, pixels.byteOffset, pixels.length);
  for (let c = 0; c < 3; c++) {
    const table = channelTable(norm.mean[c], norm.std[c]);
    const tableBits = new Uint32Array(table.buffer);
    const m = Math.fround(norm.mean[c]);
    const s = Math.fround(norm.std[c]);
    for (let i = c * plane; i < (c + 1) * plane; i++) {
      // Invert the normalisation, then accept the byte only if it maps back to the same bits.
      const u = Math.round((pixels[i] * s + m) * 255);
      if (!(u >= 0 && u <= 255) || tableBits[u] !== pixelBits[i]) return asFloat;
      bytes[i] = u;
    }
  }

  const grey = bytes.subarray(0, plane);
  for (let i = 0; i < plane; i++) {
    if (bytes[plane + i] !== grey[i] || bytes[2 * plane + i] !== grey[i]) return { encoding: 'uint8-rgb', data: bytes };
  }
  return { encoding: 'uint8-grey', data: grey };
}

/** Decodes `data` back to `count` float32 values. */
export function decodePixels(encoding: PixelEncoding, data: Uint8Array, count: number, norm: Normalisation): Float32Array {
  const pixels = new Float32Array(count);
  if (encoding === 'float32') {
    new Uint8Array(pixels.buffer).set(data);
    return pixels;
  }

  const plane = count / 3;
  for (let c = 0; c < 3; c++) {
    const table = channelTable(norm.mean[c], norm.std[c]);
    const offset = encoding === 'uint8-grey' ? 0 : c * plane;
    for (let i = 0; i < plane; i++) pixels[c * plane + i] = table[data[offset + i]];
  }
  return pixels;
}

/** Returns the payload size in bytes of `count` values in `encoding`. */
export function payloadBytes(encoding: PixelEncoding, count: number): number {
  if (encoding === 'float32') return count * 4;
  return encoding === 'uint8-rgb' ? count : count / 3;
}
