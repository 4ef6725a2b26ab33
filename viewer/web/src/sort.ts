// Back-to-front ordering of splats by view depth: one counting sort over 16-bit depth keys,
// O(N + 65536) per call, no comparisons and no allocation after the first call.

import type { Mat4 } from "./math";

const BUCKETS = 1 << 16;

export class DepthSorter {
  private depths = new Float32Array(0);
  private keys = new Uint16Array(0);
  private readonly counts = new Uint32Array(BUCKETS);
  /** Splat indices, farthest first, after `sort`. */
  order = new Uint32Array(0);

  /**
   * Orders `n` splats farthest first for the world-to-view matrix `view` (column-major; view
   * space looks down -z, so depth = -z_view).
   *
   * @param means - [n*3] world positions.
   * @returns `order` (valid until the next call).
   */
  sort(means: Float32Array, n: number, view: Mat4): Uint32Array {
    if (this.depths.length < n) {
      this.depths = new Float32Array(n);
      this.keys = new Uint16Array(n);
      this.order = new Uint32Array(n);
    }
    const depths = this.depths;
    const r0 = -view[2];
    const r1 = -view[6];
    const r2 = -view[10];
    const r3 = -view[14];
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < n; i++) {
      let d = r0 * means[3 * i] + r1 * means[3 * i + 1] + r2 * means[3 * i + 2] + r3;
      if (!Number.isFinite(d)) d = 0; // a broken splat must not poison the buckets
      depths[i] = d;
      d = depths[i]; // the float32 value the keys are computed from (else the farthest splat's
      // rounded depth can exceed `hi` and wrap to the last key)
      if (d < lo) lo = d;
      if (d > hi) hi = d;
    }
    const counts = this.counts;
    counts.fill(0);
    const keys = this.keys;
    // key 0 = farthest, so the stable counting sort emits far to near.
    const scale = hi > lo ? (BUCKETS - 1) / (hi - lo) : 0;
    for (let i = 0; i < n; i++) {
      const k = Math.min(BUCKETS - 1, Math.max(0, Math.floor((hi - depths[i]) * scale)));
      keys[i] = k;
      counts[k]++;
    }
    let sum = 0;
    for (let k = 0; k < BUCKETS; k++) {
      const c = counts[k];
      counts[k] = sum;
      sum += c;
    }
    const order = this.order;
    for (let i = 0; i < n; i++) order[counts[keys[i]]++] = i;
    return order.subarray(0, n);
  }
}
