// Per-frame data of one clip, fetched in ranges ("chunks") so playback starts as soon as the
// first range is in: the chunk under the playhead first, then the rest in order in the
// background, one request at a time. Frames stay in their compact form until drawn.

import type { Api } from "./api";
import type { Frame, FrameRange } from "./decode";

export class FrameStore {
  private readonly chunks = new Map<number, FrameRange>();
  private readonly pending = new Map<number, Promise<FrameRange>>();
  private decoded: { index: number; frame: Frame } | null = null;
  private disposed = false;
  /** The first error a chunk fetch met, if any. */
  error: Error | null = null;

  constructor(
    private readonly api: Api,
    readonly clipId: string,
    readonly numFrames: number,
    readonly n: number,
    readonly chunkSize: number,
    private readonly onChunk: () => void = () => {},
  ) {
    if (!(chunkSize >= 1)) throw new RangeError(`chunk size must be >= 1, got ${chunkSize}`);
  }

  get loadedFrames(): number {
    let total = 0;
    for (const range of this.chunks.values()) total += range.count;
    return total;
  }

  get complete(): boolean {
    return this.loadedFrames >= this.numFrames;
  }

  has(index: number): boolean {
    return this.chunks.has(Math.floor(index / this.chunkSize));
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
    const range = this.chunks.get(Math.floor(index / this.chunkSize));
    if (range === undefined) return null;
    const frame = range.frame(index - range.start);
    this.decoded = { index, frame };
    return frame;
  }

  /** Fetches the chunk holding frame `index` unless it is loaded or on its way. */
  request(index: number): Promise<FrameRange> {
    const chunk = Math.floor(index / this.chunkSize);
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

  /** Loads every chunk, in order from the one holding `from`, one request at a time. */
  async loadAll(from = 0): Promise<void> {
    const chunks = Math.ceil(this.numFrames / this.chunkSize);
    const first = Math.floor(from / this.chunkSize);
    for (let k = 0; k < chunks && !this.disposed; k++) {
      const chunk = (first + k) % chunks;
      if (!this.chunks.has(chunk)) await this.request(chunk * this.chunkSize);
    }
  }

  dispose(): void {
    this.disposed = true;
    this.chunks.clear();
    this.decoded = null;
  }
}
