import assert from "node:assert/strict";
import { test } from "node:test";

import { lookAt } from "../src/math";
import { DepthSorter } from "../src/sort";

function depthsFor(means: Float32Array, view: Float32Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < means.length / 3; i++) {
    out.push(-(view[2] * means[3 * i] + view[6] * means[3 * i + 1] + view[10] * means[3 * i + 2] + view[14]));
  }
  return out;
}

test("counting sort orders far to near like a comparison sort, for random splats and views", () => {
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const sorter = new DepthSorter();
  for (const n of [1, 2, 17, 5000]) {
    const means = new Float32Array(3 * n).map(() => (rand() - 0.5) * 300);
    const eye: [number, number, number] = [(rand() - 0.5) * 1000, (rand() - 0.5) * 400, 650];
    const view = lookAt(eye, [0, -30, 0], [0, 1, 0]);
    const order = [...sorter.sort(means, n, view)];
    assert.deepEqual([...order].sort((a, b) => a - b), [...Array(n).keys()], "a permutation");
    const d = depthsFor(means, view);
    const range = Math.max(...d) - Math.min(...d);
    for (let k = 1; k < n; k++) {
      // far to near, up to one 16-bit bucket of the depth range
      assert.ok(d[order[k - 1]] >= d[order[k]] - range / 65535 - 1e-9, `n=${n} k=${k}`);
    }
  }
});

test("frontal camera: the splat nearest the camera (largest z) is drawn last", () => {
  const means = new Float32Array([0, 0, 50, 0, 0, -50, 0, 0, 0]);
  const view = lookAt([0, -30, 650], [0, -30, 0], [0, 1, 0]);
  assert.deepEqual([...new DepthSorter().sort(means, 3, view)], [1, 2, 0]);
});

test("a NaN position does not break the order of the others", () => {
  const means = new Float32Array([0, 0, 10, NaN, 0, 0, 0, 0, -10]);
  const view = lookAt([0, 0, 650], [0, 0, 0], [0, 1, 0]);
  const order = [...new DepthSorter().sort(means, 3, view)];
  assert.deepEqual([...order].sort(), [0, 1, 2]);
  assert.ok(order.indexOf(2) < order.indexOf(0));
});
