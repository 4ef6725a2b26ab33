import assert from "node:assert/strict";
import { test } from "node:test";

import type { Api } from "../src/api";
import { decodeFrames, frameStride } from "../src/decode";
import { FrameStore, frameAt } from "../src/frames";
import { encodeFrames } from "./helpers";

test("frameAt = floor(t * fps) clamped to the clip", () => {
  assert.equal(frameAt(0, 25, 10), 0);
  assert.equal(frameAt(0.0399, 25, 10), 0);
  assert.equal(frameAt(0.04, 25, 10), 1);
  assert.equal(frameAt(0.3, 25, 10), 7);
  assert.equal(frameAt(100, 25, 10), 9);
  assert.equal(frameAt(-1, 25, 10), 0);
  assert.equal(frameAt(NaN, 25, 10), 0);
  assert.equal(frameAt(1, 25, 0), -1);
});

/** An Api stand-in serving a clip of `numFrames` 1-Gaussian frames whose x is the frame index. */
function fakeApi(numFrames: number, log: [number, number][]): Api {
  return {
    frames: async (_id: string, start: number, count: number, n: number) => {
      log.push([start, count]);
      const frames = [];
      for (let k = start; k < Math.min(numFrames, start + count); k++) {
        frames.push({ means: [k, 0, 0], quats: [127, 0, 0, 0], rgba: [0, 0, 0, 255] });
      }
      return decodeFrames(encodeFrames(n, start, 25, frames), n);
    },
  } as unknown as Api;
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

test("ranges load from the playhead forward, then behind it; frames decode to their own data", async () => {
  const log: [number, number][] = [];
  const store = new FrameStore(fakeApi(23, log), "c", 23, 1, 5);
  const fail = (e: Error) => assert.fail(e);
  for (let k = 0; k < 20; k++) {
    store.maintain(12, fail);
    await settle();
  }
  assert.deepEqual(log, [[10, 5], [15, 5], [20, 3], [5, 5], [0, 5]]);
  assert.ok(store.complete);
  for (const i of [0, 12, 22]) assert.equal(store.get(i)!.means[0], i);
});

test("over the byte budget the range farthest from the playhead is dropped, never the playhead's", async () => {
  const log: [number, number][] = [];
  const stride = frameStride(1);
  const store = new FrameStore(fakeApi(30, log), "c", 30, 1, 5, () => {}, 2 * 5 * stride);
  const fail = (e: Error) => assert.fail(e);
  for (let k = 0; k < 10; k++) {
    store.maintain(0, fail);
    await settle();
  }
  assert.deepEqual(log, [[0, 5], [5, 5]], "stops at the budget");
  for (let k = 0; k < 10; k++) {
    store.maintain(27, fail); // seek near the end
    await settle();
  }
  assert.ok(store.has(27) && store.has(20) && !store.has(0) && !store.has(5));
  assert.ok(store.loadedBytes <= 2 * 5 * stride);
  assert.equal(store.nearestLoaded(12), 20, "an unloaded frame shows the nearest loaded one");
  store.setBudget(5 * stride);
  assert.ok(store.has(27) && !store.has(20));
});
