import assert from "node:assert/strict";
import { test } from "node:test";

import { decodeCanonical, decodeFrames, FormatError, frameStride, halfToFloatTable } from "../src/decode";
import { encodeCanonical, encodeFrames } from "./helpers";

test("canonical layout round-trips, N = 2", () => {
  const means = [1, 2, 3, -4.5, 5.25, -6];
  const scales = [0.5, 1, 2, 3, 4, 5];
  const quats = [1, 0, 0, 0, 0.5, 0.5, 0.5, 0.5];
  const rgba = [10, 20, 30, 255, 1, 2, 3, 4];
  const c = decodeCanonical(encodeCanonical(means, scales, quats, rgba));
  assert.equal(c.n, 2);
  assert.deepEqual([...c.means], means);
  assert.deepEqual([...c.scales], scales);
  assert.deepEqual([...c.quats], quats);
  assert.deepEqual([...c.rgba], rgba);
});

test("canonical: wrong magic, version or size is a FormatError naming the problem", () => {
  const good = encodeCanonical([0, 0, 0], [1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]);
  const magic = good.slice(0);
  new Uint8Array(magic)[0] = 0x58; // "X3DC"
  assert.throws(() => decodeCanonical(magic), (e: Error) => e instanceof FormatError && /magic/.test(e.message));
  const version = good.slice(0);
  new DataView(version).setUint32(4, 2, true);
  assert.throws(() => decodeCanonical(version), /version 2/);
  assert.throws(() => decodeCanonical(good.slice(0, good.byteLength - 1)), /N=1 needs 60 bytes, got 59/);
  assert.throws(() => decodeCanonical(new ArrayBuffer(2)), FormatError);
});

test("half floats: exact values, subnormals, infinities", () => {
  const t = halfToFloatTable();
  assert.equal(t[0x3c00], 1);
  assert.equal(t[0xc000], -2);
  assert.equal(t[0x7bff], 65504);
  assert.equal(t[0x0001], 2 ** -24);
  assert.equal(t[0x03ff], 1023 * 2 ** -24);
  assert.equal(t[0x7c00], Infinity);
  assert.ok(Number.isNaN(t[0x7e00]));
  assert.equal(t[0x5640], 100);
});

test("frames: odd N pads the f16 means to 4 bytes; values decode per frame", () => {
  const n = 3; // 18 bytes of means -> 20
  assert.equal(frameStride(n), 20 + 12 + 12);
  const frame = (k: number) => ({
    means: [k, -k, 100 + k, 0.5, 1.5, -2.5, 60, -30.25, 7],
    quats: [127, 0, 0, 0, 0, -127, 0, 0, 64, 64, -64, 64],
    rgba: [k, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 255],
  });
  const range = decodeFrames(encodeFrames(n, 10, 25, [frame(0), frame(1), frame(2)]), n);
  assert.deepEqual([range.n, range.start, range.count, range.fps], [3, 10, 3, 25]);
  const f2 = range.frame(2);
  assert.deepEqual([...f2.means], [2, -2, 102, 0.5, 1.5, -2.5, 60, -30.25, 7]);
  assert.deepEqual([...f2.quats.slice(0, 8)], [1, 0, 0, 0, 0, -1, 0, 0]);
  assert.ok(Math.abs(f2.quats[8] - 64 / 127) < 1e-7);
  assert.deepEqual([...f2.rgba], frame(2).rgba);
  assert.throws(() => range.frame(3), RangeError);
});

test("frames: N differing from the canonical one, or a short body, is refused", () => {
  const data = encodeFrames(2, 0, 25, [{ means: [0, 0, 0, 0, 0, 0], quats: [127, 0, 0, 0, 127, 0, 0, 0], rgba: [0, 0, 0, 0, 0, 0, 0, 0] }]);
  assert.throws(() => decodeFrames(data, 3), /N=2 Gaussians per frame, the canonical data has 3/);
  assert.throws(() => decodeFrames(data.slice(0, data.byteLength - 4), 2), /need 60 bytes, got 56/);
});
