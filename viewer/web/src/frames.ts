// Per-frame data of one clip, fetched in ranges ("chunks", one second each) so playback starts
// as soon as the first range is in. `maintain(playhead)` runs every animation frame: it asks
// for the chunk under the playhead first, then the following ones, then (budget permitting) the
// ones before it, at most two requests in flight. Frames stay in their compact form until drawn,
// and past a byte budget the chunk farthest from the playhead is dropped (a long clip at the
// demo's ~280 KB per frame would otherwise hold gigabytes).

import type { Api } from "./api";
import { type Frame, type FrameRange, frameStride } from "./decode";

/** The frame shown at `time` seconds: floor(time * fps) clamped to [0, numFrames - 1]; -1 for
 * an empty clip. */
export function frameAt(time: number, fps: number, numFrames: number): number {
  if (numFrames <= 0) return -1;
  const index = Math.floor((Number.isFinite(time) ? time : 0) * fps);
  return Math.min(numFrames - 1, Math.max(0, index));
}

export const DEFAULT_FRAME_BUDGET_BYTES = 256 * 1024 * 1024;
const MAX_IN_FLIGHT = 2;

export class FrameStore {
  private readonly chunks = new Map<number, FrameRange>();
  private readonly pending = new Map<number, Promise<FrameRange>>();
  private decoded: { index: number; frame: Frame } | null = null;
  private disposed = false;
  private playheadChunk = 0;
  readonly numChunks: number;
  /** The first error a chunk fetch met, if any. */
  error: Error | null = null;

  constructor(
    private readonly api: Api,
    readonly clipId: string,
    readonly numFrames: number,
    readonly n: number,
    readonly chunkSize: number,
    private readonly onChunk: () => void = () => {},
    private budgetBytes: number = DEFAULT_FRAME_BUDGET_BYTES,
  ) {
    if (!(chunkSize >= 1)) throw new RangeError(`chunk size must be >= 1, got ${chunkSize}`);
    this.numChunks = Math.ceil(numFrames / chunkSize);
  }

  get loadedFrames(): number {
    let total = 0;
    for (const range of this.chunks.values()) total += range.count;
    return total;
  }

  get loadedBytes(): number {
    return this.loadedFrames * frameStride(this.n);
  }

  get complete(): boolean {
    return this.loadedFrames >= this.numFrames;
  }

  private chunkOf(index: number): number {
    return Math.floor(index / this.chunkSize);
  }

  private chunkBytes(chunk: number): number {
    const count = Math.min(this.chunkSize, this.numFrames - chunk * this.chunkSize);
    return count * frameStride(this.n);
  }

  has(index: number): boolean {
    return this.chunks.has(this.chunkOf(index));
  }

  /** The loaded frame nearest to `index`, preferring earlier ones; -1 when none is loaded. */
  nearestLoaded(index: number): number {
    if (this.has(index)) return index;
    let best = -1;
    let bestDistance = Infinity;
    for (const range of this.chunks.values()) {
      const last = range.start + range.count - 1;
      const candidate = index > last ? last : range.start;
      const distance = Math.abs(candidate - index) + (candidate > index ? 0.5 : 0);
      if (distance < bestDistance) {
        best = candidate;
        bestDistance = distance;
      }
    }
    return best;
  }

  /** Frame `index` decoded (the last one is cached), or null when its chunk is not loaded. */
  get(index: number): Frame | null {
    if (this.decoded !== null && this.decoded.index === index) return this.decoded.frame;
    const range = this.chunks.get(this.chunkOf(index));
    if (range === undefined) return null;
    const frame = range.frame(index - range.start);
    this.decoded = { index, frame };
    return frame;
  }

  /** Fetches the chunk holding frame `index` unless it is loaded or on its way. */
  request(index: number): Promise<FrameRange> {
    const chunk = this.chunkOf(index);
    const loaded = this.chunks.get(chunk);
    if (loaded !== undefined) return Promise.resolve(loaded);
    const inFlight = this.pending.get(chunk);
    if (inFlight !== undefined) return inFlight;
    const start = chunk * this.chunkSize;
    const count = Math.min(this.chunkSize, this.numFrames - start);
    const promise = this.api
      .frames(this.clipId, start, count, this.n)
      .then((range) => {
        if (range.start !== start || range.count !== count) {
          throw new Error(`asked for frames ${start}+${count}, got ${range.start}+${range.count}`);
        }
        if (!this.disposed) {
          this.chunks.set(chunk, range);
          this.evict();
          this.onChunk();
        }
        return range;
      })
      .catch((err: Error) => {
        this.error ??= err;
        throw err;
      })
      .finally(() => this.pending.delete(chunk));
    this.pending.set(chunk, promise);
    return promise;
  }

  /** Sets the byte budget and drops what no longer fits. */
  setBudget(bytes: number): void {
    this.budgetBytes = bytes;
    this.evict();
  }

  /** Drops the chunks farthest from the playhead while over budget (never the playhead's). */
  private evict(): void {
    let bytes = this.loadedBytes;
    while (bytes > this.budgetBytes && this.chunks.size > 1) {
      let victim = -1;
      let farthest = -1;
      for (const chunk of this.chunks.keys()) {
        const distance = Math.abs(chunk - this.playheadChunk);
        if (chunk !== this.playheadChunk && distance > farthest) {
          victim = chunk;
          farthest = distance;
        }
      }
      if (victim < 0) break;
      this.chunks.delete(victim);
      if (this.decoded !== null && this.chunkOf(this.decoded.index) === victim) this.decoded = null;
      bytes -= this.chunkBytes(victim);
    }
  }

  /**
   * Keeps the data around `index` coming: its chunk first, then the next missing chunk ahead of
   * it, then behind it, while the budget allows. Cheap when nothing is missing; call it often.
   */
  maintain(index: number, onError: (err: Error) => void): void {
    if (this.disposed || this.error !== null) return;
    const current = Math.min(this.numChunks - 1, Math.max(0, this.chunkOf(index)));
    this.playheadChunk = current;
    if (!this.chunks.has(current)) {
      this.request(current * this.chunkSize).catch(onError);
      return;
    }
    if (this.pending.size >= MAX_IN_FLIGHT) return;
    let budget = this.budgetBytes - this.loadedBytes;
    for (const chunk of this.pending.keys()) budget -= this.chunkBytes(chunk);
    const order: number[] = [];
    for (let c = current + 1; c < this.numChunks; c++) order.push(c);
    for (let c = current - 1; c >= 0; c--) order.push(c);
    for (const chunk of order) {
      if (this.chunks.has(chunk) || this.pending.has(chunk)) continue;
      // over budget it is still worth loading when a farther chunk would be dropped for it
      const distance = Math.abs(chunk - current);
      const displaces = [...this.chunks.keys()].some((c) => Math.abs(c - current) > distance);
      if (this.chunkBytes(chunk) > budget && !displaces) return;
      this.request(chunk * this.chunkSize).catch(onError);
      return;
    }
  }

  dispose(): void {
    this.disposed = true;
    this.chunks.clear();
    this.decoded = null;
  }
}
