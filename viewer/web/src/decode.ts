// Decoders of the server's binary layouts (docs/viewer.md): the canonical Gaussians "E3DC"
// and ranges of per-frame data "E3DF". All little-endian; every array starts 4-byte aligned.

/** A binary answer that does not follow the documented layout. */
export class FormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FormatError";
  }
}

export const CANONICAL_MAGIC = "E3DC";
export const FRAMES_MAGIC = "E3DF";
export const CANONICAL_HEADER_BYTES = 16;
export const FRAMES_HEADER_BYTES = 32;
export const LAYOUT_VERSION = 1;

/** The canonical (neutral) Gaussians of the subject, N of them. */
export interface Canonical {
  n: number;
  means: Float32Array; // [N*3] mm, head frame
  scales: Float32Array; // [N*3] mm, activated
  quats: Float32Array; // [N*4] w,x,y,z, normalised
  rgba: Uint8Array; // [N*4] colour and opacity, 0..255
}

/** The dynamic part of one frame: what changes per frame (scales stay canonical). */
export interface Frame {
  means: Float32Array; // [N*3] mm, head frame
  quats: Float32Array; // [N*4] w,x,y,z, unit length up to i8 rounding
  rgba: Uint8Array; // [N*4] colour and opacity, 0..255
}

/** A decoded "E3DF" answer: `count` frames starting at `start`, kept in their compact form. */
export interface FrameRange {
  n: number;
  start: number;
  count: number;
  fps: number;
  /** Frame `start + k` (0 <= k < count), decoded on demand. */
  frame(k: number): Frame;
}

export function align4(bytes: number): number {
  return (bytes + 3) & ~3;
}

/** Bytes of one frame in "E3DF": f16 means padded to 4, i8 quats, u8 rgba. */
export function frameStride(n: number): number {
  return align4(6 * n) + 4 * n + 4 * n;
}

function magicOf(view: DataView): string {
  if (view.byteLength < 4) return "";
  return String.fromCharCode(view.getUint8(0), view.getUint8(1), view.getUint8(2), view.getUint8(3));
}

let halfTable: Float32Array | null = null;

/** Float32 value of every IEEE 754 half-precision bit pattern (65536 entries, built once). */
export function halfToFloatTable(): Float32Array {
  if (halfTable !== null) return halfTable;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    let value: number;
    if (exp === 0) value = frac * 2 ** -24; // subnormal
    else if (exp === 31) value = frac === 0 ? Infinity : NaN;
    else value = (1 + frac / 1024) * 2 ** (exp - 15);
    table[h] = sign * value;
  }
  halfTable = table;
  return table;
}

/** Decodes "E3DC": 16-byte header, then means, scales, quats (f32) and rgba (u8). */
export function decodeCanonical(buffer: ArrayBuffer): Canonical {
  const view = new DataView(buffer);
  const magic = magicOf(view);
  if (magic !== CANONICAL_MAGIC) {
    throw new FormatError(`canonical data: expected magic ${CANONICAL_MAGIC}, got ${JSON.stringify(magic)}`);
  }
  if (buffer.byteLength < CANONICAL_HEADER_BYTES) {
    throw new FormatError(`canonical data: ${buffer.byteLength} bytes is shorter than its header`);
  }
  const version = view.getUint32(4, true);
  if (version !== LAYOUT_VERSION) {
    throw new FormatError(`canonical data: version ${version}, this viewer reads ${LAYOUT_VERSION}`);
  }
  const n = view.getUint32(8, true);
  const expected = CANONICAL_HEADER_BYTES + n * (12 + 12 + 16 + 4);
  if (buffer.byteLength !== expected) {
    throw new FormatError(`canonical data: N=${n} needs ${expected} bytes, got ${buffer.byteLength}`);
  }
  let offset = CANONICAL_HEADER_BYTES;
  const means = new Float32Array(buffer.slice(offset, offset + 12 * n));
  offset += 12 * n;
  const scales = new Float32Array(buffer.slice(offset, offset + 12 * n));
  offset += 12 * n;
  const quats = new Float32Array(buffer.slice(offset, offset + 16 * n));
  offset += 16 * n;
  const rgba = new Uint8Array(buffer.slice(offset, offset + 4 * n));
  if (!littleEndianHost()) byteSwap32(means, scales, quats);
  return { n, means, scales, quats, rgba };
}

/** Decodes "E3DF": 32-byte header, then `count` frames of `frameStride(N)` bytes each. */
export function decodeFrames(buffer: ArrayBuffer, expectedN?: number): FrameRange {
  const view = new DataView(buffer);
  const magic = magicOf(view);
  if (magic !== FRAMES_MAGIC) {
    throw new FormatError(`frame data: expected magic ${FRAMES_MAGIC}, got ${JSON.stringify(magic)}`);
  }
  if (buffer.byteLength < FRAMES_HEADER_BYTES) {
    throw new FormatError(`frame data: ${buffer.byteLength} bytes is shorter than its header`);
  }
  const version = view.getUint32(4, true);
  if (version !== LAYOUT_VERSION) {
    throw new FormatError(`frame data: version ${version}, this viewer reads ${LAYOUT_VERSION}`);
  }
  const n = view.getUint32(8, true);
  const start = view.getUint32(12, true);
  const count = view.getUint32(16, true);
  const fps = view.getFloat32(20, true);
  if (expectedN !== undefined && n !== expectedN) {
    throw new FormatError(`frame data: N=${n} Gaussians per frame, the canonical data has ${expectedN}`);
  }
  const stride = frameStride(n);
  const expected = FRAMES_HEADER_BYTES + count * stride;
  if (buffer.byteLength !== expected) {
    throw new FormatError(
      `frame data: ${count} frames of N=${n} need ${expected} bytes, got ${buffer.byteLength}`,
    );
  }
  const meanBytes = align4(6 * n);
  const halves = halfToFloatTable();
  const frame = (k: number): Frame => {
    if (!(k >= 0 && k < count)) throw new RangeError(`frame ${k} outside 0..${count - 1}`);
    const base = FRAMES_HEADER_BYTES + k * stride;
    const means = new Float32Array(3 * n);
    const rawMeans = new Uint16Array(buffer, base, 3 * n); // base is 4-aligned: 32 + k*stride
    if (littleEndianHost()) {
      for (let i = 0; i < 3 * n; i++) means[i] = halves[rawMeans[i]];
    } else {
      for (let i = 0; i < 3 * n; i++) means[i] = halves[view.getUint16(base + 2 * i, true)];
    }
    const rawQuats = new Int8Array(buffer, base + meanBytes, 4 * n);
    const quats = new Float32Array(4 * n);
    for (let i = 0; i < 4 * n; i++) quats[i] = rawQuats[i] / 127;
    const rgba = new Uint8Array(buffer, base + meanBytes + 4 * n, 4 * n);
    return { means, quats, rgba };
  };
  return { n, start, count, fps, frame };
}

let littleEndian: boolean | null = null;

function littleEndianHost(): boolean {
  if (littleEndian === null) littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  return littleEndian;
}

function byteSwap32(...arrays: Float32Array[]): void {
  for (const a of arrays) {
    const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    for (let i = 0; i < bytes.length; i += 4) {
      const b0 = bytes[i];
      const b1 = bytes[i + 1];
      bytes[i] = bytes[i + 3];
      bytes[i + 1] = bytes[i + 2];
      bytes[i + 2] = b1;
      bytes[i + 3] = b0;
    }
  }
}
