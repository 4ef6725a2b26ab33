// Live mode: the microphone streamed to the server's `WS /api/live` (docs/viewer.md, "Live
// mode"), frames drawn as they come back. An AudioWorklet (loaded from a Blob URL, so the bundle
// stays one file) hands the captured samples to the page, which sends them as float32 chunks of
// CHUNK_SECONDS at the AudioContext's rate; the server resamples, runs the streaming geometry
// and answers every chunk with one "E3DF" message (the frames that chunk completed, maybe none).

import { decodeFrames, type FrameRange } from "./decode";

export type LiveState = "off" | "starting" | "live" | "stopping" | "done" | "error";

/** The server's answer to the start message. */
export interface LiveStarted {
  started: true;
  emotion: string;
  fps: number;
  num_gaussians: number;
  lookahead_seconds: number;
  max_seconds: number;
  max_chunk_seconds: number;
}

export interface LiveEvents {
  /** Frames arrived; `sentAt` is performance.now() when the chunk they answer was sent. */
  frames(range: FrameRange, sentAt: number): void;
  /** The state changed; `detail` carries the error message in "error". */
  state(state: LiveState, detail?: string): void;
}

/** Audio sent per message (the server takes up to `max_chunk_seconds`, 1 s). */
export const CHUNK_SECONDS = 0.15;

// Mixes the input to mono and posts each 128-sample render quantum to the page.
const TAP_WORKLET = `
class E3DTap extends AudioWorkletProcessor {
  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length > 0) {
      const n = channels[0].length;
      const mono = new Float32Array(n);
      for (const channel of channels) for (let i = 0; i < n; i++) mono[i] += channel[i] / channels.length;
      this.port.postMessage(mono, [mono.buffer]);
    }
    return true;
  }
}
registerProcessor("e3d-tap", E3DTap);
`;

/** The websocket URL of the live endpoint on this page's server. */
export function liveUrl(location: Location): string {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}/api/live`;
}

export class LiveSession {
  state: LiveState = "off";
  /** Frames received so far. */
  frames = 0;
  /** Chunks sent so far. */
  chunks = 0;
  /** Largest |sample| sent so far (0 means the microphone gave silence). */
  peak = 0;
  started: LiveStarted | null = null;
  private socket: WebSocket | null = null;
  private context: AudioContext | null = null;
  private media: MediaStream | null = null;
  private tap: AudioWorkletNode | null = null;
  private pending: Float32Array[] = [];
  private pendingSamples = 0;
  private sentSamples = 0;
  private sampleRate = 0;
  private readonly sentAt: number[] = []; // send times of chunks not answered yet

  constructor(
    private readonly url: string,
    private readonly events: LiveEvents,
  ) {}

  /** Seconds of audio sent so far. */
  get sentSeconds(): number {
    return this.sentSamples / (this.sampleRate || 1);
  }

  get active(): boolean {
    return this.state === "starting" || this.state === "live" || this.state === "stopping";
  }

  /** Opens the microphone and the socket; resolves once audio flows (or rejects with why). */
  async start(emotion: string, intensity: number | null): Promise<void> {
    this.setState("starting");
    try {
      if (navigator.mediaDevices?.getUserMedia === undefined) {
        throw new Error("this page cannot use the microphone: open it over https or on 127.0.0.1/localhost");
      }
      const media = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
      this.media = media;
      const context = new AudioContext();
      this.context = context;
      this.sampleRate = context.sampleRate;
      const module = URL.createObjectURL(new Blob([TAP_WORKLET], { type: "text/javascript" }));
      try {
        await context.audioWorklet.addModule(module);
      } finally {
        URL.revokeObjectURL(module);
      }
      await context.resume();
      this.started = await this.open(emotion, intensity, context.sampleRate);
      if (this.state !== "starting") return; // stopped meanwhile
      const source = context.createMediaStreamSource(media);
      this.tap = new AudioWorkletNode(context, "e3d-tap");
      this.tap.port.onmessage = (e: MessageEvent<Float32Array>) => this.capture(e.data);
      source.connect(this.tap);
      this.tap.connect(context.destination); // pulls the graph; the tap outputs silence
      this.setState("live");
    } catch (err) {
      if (this.state !== "starting") return; // stopped meanwhile: not an error
      this.finish("error", describe(err));
    }
  }

  /** Stops capturing; the server flushes the last frames and says done. */
  stop(): void {
    if (this.state !== "live" && this.state !== "starting") return;
    this.closeAudio();
    const socket = this.socket;
    if (socket === null || socket.readyState !== WebSocket.OPEN) {
      this.finish("done");
      return;
    }
    this.flush();
    this.sentAt.push(performance.now()); // the last "E3DF" message answers the end message
    socket.send(JSON.stringify({ end: true }));
    this.setState("stopping");
  }

  /** Everything closed at once (page teardown). */
  dispose(): void {
    this.closeAudio();
    this.socket?.close();
    this.socket = null;
  }

  private open(emotion: string, intensity: number | null, sampleRate: number): Promise<LiveStarted> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(this.url);
      socket.binaryType = "arraybuffer";
      this.socket = socket;
      let answered = false;
      socket.onopen = () => socket.send(JSON.stringify({ emotion, intensity, sample_rate: sampleRate }));
      socket.onmessage = (e: MessageEvent) => {
        if (!answered) {
          answered = true;
          const body = typeof e.data === "string" ? JSON.parse(e.data) : null;
          if (body?.started === true) resolve(body as LiveStarted);
          else reject(new Error(body?.detail ?? "the server did not start the live session"));
          return;
        }
        this.receive(e.data);
      };
      socket.onclose = (e: CloseEvent) => {
        if (!answered) {
          answered = true;
          reject(new Error(e.reason || `the live connection closed (code ${e.code})`));
        } else if (this.active) {
          this.finish("error", e.reason || `the live connection closed (code ${e.code})`);
        }
      };
    });
  }

  private receive(data: ArrayBuffer | string): void {
    try {
      if (typeof data === "string") {
        const body = JSON.parse(data);
        if (body.done === true) this.finish("done");
        else if (typeof body.detail === "string") this.finish("error", body.detail);
        return;
      }
      const range = decodeFrames(data, this.started?.num_gaussians);
      const sentAt = this.sentAt.shift() ?? performance.now();
      this.frames += range.count;
      if (range.count > 0) this.events.frames(range, sentAt);
    } catch (err) {
      this.finish("error", `bad message from the server: ${describe(err)}`);
    }
  }

  private capture(block: Float32Array): void {
    if (this.state !== "live" || this.context === null) return;
    this.pending.push(block);
    this.pendingSamples += block.length;
    if (this.pendingSamples >= Math.round(CHUNK_SECONDS * this.context.sampleRate)) this.flush();
    const limit = this.started?.max_seconds ?? Infinity;
    const next = (this.sentSamples + Math.round(CHUNK_SECONDS * this.context.sampleRate)) / this.context.sampleRate;
    if (next > limit) this.stop(); // the server's session limit: end cleanly before it
  }

  /** Sends what was captured and not sent yet as one chunk. */
  private flush(): void {
    if (this.pendingSamples === 0 || this.socket?.readyState !== WebSocket.OPEN) return;
    const chunk = new Float32Array(this.pendingSamples);
    let offset = 0;
    for (const block of this.pending) {
      chunk.set(block, offset);
      offset += block.length;
    }
    this.pending = [];
    this.pendingSamples = 0;
    this.sentSamples += chunk.length;
    for (let i = 0; i < chunk.length; i++) this.peak = Math.max(this.peak, Math.abs(chunk[i]));
    this.sentAt.push(performance.now());
    this.chunks++;
    this.socket.send(littleEndianBytes(chunk));
  }

  private closeAudio(): void {
    this.tap?.port.close();
    this.tap?.disconnect();
    this.tap = null;
    for (const track of this.media?.getTracks() ?? []) track.stop();
    this.media = null;
    this.context?.close().catch(() => {}); // already closed: nothing to do
    this.context = null;
  }

  private finish(state: "done" | "error", detail?: string): void {
    this.closeAudio();
    if (this.socket !== null && this.socket.readyState <= WebSocket.OPEN) this.socket.close();
    this.socket = null;
    this.setState(state, detail);
  }

  private setState(state: LiveState, detail?: string): void {
    this.state = state;
    this.events.state(state, detail);
  }
}

/** The samples (a whole buffer) as little-endian float32 bytes (a copy on big-endian hosts). */
function littleEndianBytes(samples: Float32Array): ArrayBuffer {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] === 1) return samples.buffer as ArrayBuffer;
  const view = new DataView(new ArrayBuffer(samples.byteLength));
  samples.forEach((v, i) => view.setFloat32(4 * i, v, true));
  return view.buffer;
}

/** A readable message for a failed start (microphone refusals get a hint). */
function describe(err: unknown): string {
  const name = err instanceof DOMException ? err.name : "";
  if (name === "NotAllowedError") return "the microphone was refused; allow it for this page and try again";
  if (name === "NotFoundError") return "no microphone was found";
  return err instanceof Error ? err.message : String(err);
}
