// Encoders of the documented layouts (docs/viewer.md), written from the spec for the tests.

import { align4 } from "../src/decode";

export function encodeCanonical(
  means: number[],
  scales: number[],
  quats: number[],
  rgba: number[],
  n = means.length / 3,
): ArrayBuffer {
  const buffer = new ArrayBuffer(16 + 44 * n);
  const view = new DataView(buffer);
  "E3DC".split("").forEach((c, i) => view.setUint8(i, c.charCodeAt(0)));
  view.setUint32(4, 1, true);
  view.setUint32(8, n, true);
  let o = 16;
  for (const values of [means, scales, quats]) {
    for (const v of values) {
      view.setFloat32(o, v, true);
      o += 4;
    }
  }
  for (const v of rgba) view.setUint8(o++, v);
  return buffer;
}

/** Half-float bits of `value` (round to nearest even; normal range and zero only). */
export function toHalf(value: number): number {
  if (value === 0) return Object.is(value, -0) ? 0x8000 : 0;
  const sign = value < 0 ? 0x8000 : 0;
  const a = Math.abs(value);
  const exp = Math.floor(Math.log2(a));
  const mant = Math.round((a / 2 ** exp - 1) * 1024);
  if (mant === 1024) return sign | ((exp + 16) << 10);
  return sign | ((exp + 15) << 10) | mant;
}

export interface RawFrame {
  means: number[]; // [N*3]
  quats: number[]; // [N*4] i8 values
  rgba: number[]; // [N*4]
}

export function encodeFrames(n: number, start: number, fps: number, frames: RawFrame[]): ArrayBuffer {
  const stride = align4(6 * n) + 8 * n;
  const buffer = new ArrayBuffer(32 + frames.length * stride);
  const view = new DataView(buffer);
  "E3DF".split("").forEach((c, i) => view.setUint8(i, c.charCodeAt(0)));
  view.setUint32(4, 1, true);
  view.setUint32(8, n, true);
  view.setUint32(12, start, true);
  view.setUint32(16, frames.length, true);
  view.setFloat32(20, fps, true);
  frames.forEach((f, k) => {
    const base = 32 + k * stride;
    f.means.forEach((v, i) => view.setUint16(base + 2 * i, toHalf(v), true));
    f.quats.forEach((v, i) => view.setInt8(base + align4(6 * n) + i, v));
    f.rgba.forEach((v, i) => view.setUint8(base + align4(6 * n) + 4 * n + i, v));
  });
  return buffer;
}
