// Reader for the safetensors format (https://huggingface.co/docs/safetensors): an 8-byte
// little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, then the
// raw little-endian tensor bytes. Tensors are read one at a time with positioned reads, so a
// checkpoint never has to fit in one Buffer.
import fs from 'node:fs';

/** Data types this reader converts to float32. */
export const SUPPORTED_DTYPES = ['F32', 'F16', 'BF16'] as const;
export type SupportedDtype = (typeof SUPPORTED_DTYPES)[number];

const BYTES_PER_ELEMENT: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** Absolute byte range of the data in the file: [begin, end). */
  begin: number;
  end: number;
  file: string;
}

export interface SafetensorsHeader {
  file: string;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  fileSize: number;
}

/** Maximum header size accepted; the reference implementation uses the same 100 MB bound. */
const MAX_HEADER_BYTES = 100_000_000;

/** Reads and validates the header of a .safetensors file. Tensor data is not read. */
export function readSafetensorsHeader(file: string): SafetensorsHeader {
  const fileSize = fs.statSync(file).size;
  if (fileSize < 8) throw new Error(`Invalid safetensors file ${file}: it has ${fileSize} bytes, fewer than the 8-byte header length. The file is truncated or not a safetensors file.`);

  const fd = fs.openSync(file, 'r');
  try {
    const lengthBytes = Buffer.alloc(8);
    fs.readSync(fd, lengthBytes, 0, 8, 0);
    const headerLength = Number(lengthBytes.readBigUInt64LE(0));
    if (headerLength > MAX_HEADER_BYTES || 8 + headerLength > fileSize) {
      throw new Error(
        `Invalid safetensors file ${file}: the header length is ${headerLength} bytes but the file has only ${fileSize} bytes. ` +
          `The file is truncated or not a safetensors file.`,
      );
    }
    const headerBytes = Buffer.alloc(headerLength);
    fs.readSync(fd, headerBytes, 0, headerLength, 8);

    let header: Record<string, unknown>;
    try {
      header = JSON.parse(headerBytes.toString('utf8'));
    } catch (err) {
      throw new Error(`Invalid safetensors file ${file}: the header is not valid JSON (${(err as Error).message}).`);
    }

    const dataStart = 8 + headerLength;
    const tensors = new Map<string, TensorInfo>();
    let metadata: Record<string, string> = {};
    for (const [name, entry] of Object.entries(header)) {
      if (name === '__metadata__') {
        metadata = (entry ?? {}) as Record<string, string>;
        continue;
      }
      tensors.set(name, parseEntry(file, name, entry, dataStart));
    }

    const truncated = [...tensors.values()].filter((info) => info.end > fileSize).sort((a, b) => a.begin - b.begin);
    if (truncated.length > 0) {
      const listed = truncated.slice(0, 5).map((info) => `'${info.name}' (shape ${formatShape(info.shape)}, bytes ${info.begin}-${info.end})`);
      const more = truncated.length > listed.length ? ` and ${truncated.length - listed.length} more` : '';
      throw new Error(
        `Truncated safetensors file ${file}: it has ${fileSize} bytes, but ${truncated.length === 1 ? 'tensor' : 'tensors'} ` +
          `${listed.join(', ')}${more} ${truncated.length === 1 ? 'extends' : 'extend'} past the end. ` +
          `Download or copy the checkpoint again.`,
      );
    }
    return { file, tensors, metadata, fileSize };
  } finally {
    fs.closeSync(fd);
  }
}

function parseEntry(file: string, name: string, entry: unknown, dataStart: number): TensorInfo {
  const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (typeof e?.dtype !== 'string' || !Array.isArray(e.shape) || !Array.isArray(e.data_offsets) || e.data_offsets.length !== 2) {
    throw new Error(`Invalid safetensors header in ${file}: tensor '${name}' lacks dtype, shape or data_offsets.`);
  }
  const shape = e.shape as number[];
  if (!shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new Error(`Invalid safetensors header in ${file}: tensor '${name}' has shape ${JSON.stringify(shape)}, expected non-negative integers.`);
  }
  const [offsetBegin, offsetEnd] = e.data_offsets as number[];
  const begin = dataStart + offsetBegin;
  const end = dataStart + offsetEnd;
  const bytesPerElement = BYTES_PER_ELEMENT[e.dtype];
  if (bytesPerElement !== undefined) {
    const expectedBytes = shape.reduce((a, b) => a * b, 1) * bytesPerElement;
    if (end - begin !== expectedBytes) {
      throw new Error(
        `Invalid safetensors header in ${file}: tensor '${name}' (${e.dtype}, shape ${formatShape(shape)}) needs ${expectedBytes} bytes but data_offsets span ${end - begin}.`,
      );
    }
  }
  return { name, dtype: e.dtype, shape, begin, end, file };
}

/** Returns true when `dtype` can be converted to float32 by readTensor. */
export function isSupportedDtype(dtype: string): dtype is SupportedDtype {
  return (SUPPORTED_DTYPES as readonly string[]).includes(dtype);
}

/** Reads one F32, F16 or BF16 tensor and returns its values as float32 (row-major). */
export function readTensor(info: TensorInfo): Float32Array {
  if (!isSupportedDtype(info.dtype)) {
    throw new Error(`Unsupported dtype ${info.dtype} for tensor '${info.name}' in ${info.file}. Supported dtypes: ${SUPPORTED_DTYPES.join(', ')}.`);
  }
  const bytes = Buffer.alloc(info.end - info.begin);
  const fd = fs.openSync(info.file, 'r');
  try {
    const read = fs.readSync(fd, bytes, 0, bytes.length, info.begin);
    if (read !== bytes.length) {
      throw new Error(`Truncated safetensors file ${info.file}: read ${read} of ${bytes.length} bytes of tensor '${info.name}'. Download or copy the checkpoint again.`);
    }
  } finally {
    fs.closeSync(fd);
  }
  return decode(bytes, info.dtype);
}

function decode(bytes: Buffer, dtype: SupportedDtype): Float32Array {
  // Copy into a fresh, aligned buffer: the Buffer may share a pool with an odd offset.
  const aligned = new Uint8Array(bytes.length);
  aligned.set(bytes);
  if (dtype === 'F32') return new Float32Array(aligned.buffer);

  const halves = new Uint16Array(aligned.buffer);
  const out = new Float32Array(halves.length);
  if (dtype === 'BF16') {
    // bfloat16 is the upper 16 bits of a float32.
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < halves.length; i++) bits[i] = halves[i] << 16;
    return out;
  }
  for (let i = 0; i < halves.length; i++) out[i] = halfToFloat(halves[i]);
  return out;
}

/** Converts IEEE 754 binary16 bits to a number, including subnormals, infinities and NaN. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/**
 * Writes tensors as an F32 or BF16 safetensors file. BF16 rounds to nearest even.
 * Used by tests to build broken checkpoints, and by tools that export weights.
 */
export function writeSafetensors(
  file: string,
  tensors: Map<string, { shape: number[]; data: Float32Array }>,
  options: { dtype?: 'F32' | 'BF16'; metadata?: Record<string, string> } = {},
): void {
  const dtype = options.dtype ?? 'F32';
  const encoded = new Map<string, Uint8Array>();
  for (const [name, t] of tensors) encoded.set(name, dtype === 'F32' ? new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) : toBf16Bytes(t.data));

  const header: Record<string, unknown> = { __metadata__: options.metadata ?? {} };
  let offset = 0;
  for (const [name, t] of tensors) {
    const bytes = encoded.get(name)!.byteLength;
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let headerJson = JSON.stringify(header);
  // Pad the header with spaces to a multiple of 8 bytes so the data is aligned.
  headerJson += ' '.repeat((8 - ((Buffer.byteLength(headerJson) + 8) % 8)) % 8);
  const headerBytes = Buffer.from(headerJson, 'utf8');

  const out = Buffer.alloc(8 + headerBytes.length + offset);
  out.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  headerBytes.copy(out, 8);
  let position = 8 + headerBytes.length;
  for (const bytes of encoded.values()) {
    out.set(bytes, position);
    position += bytes.byteLength;
  }
  fs.writeFileSync(file, out);
}

function toBf16Bytes(data: Float32Array): Uint8Array {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const b = bits[i];
    out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return new Uint8Array(out.buffer);
}

export function formatShape(shape: number[]): string {
  return `[${shape.join(', ')}]`;
}
