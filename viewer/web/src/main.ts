// The viewer page: picks audio (bundled example or upload), emotion and intensity, asks the
// server for a clip, polls its progress, then plays it: the <audio> element is the clock and
// the frame shown is floor(audio.currentTime * fps), clamped to the clip.

import { Api, ApiError, type ClipInfo, type Config } from "./api";
import { attachControls, DEFAULT_CAMERA, OrbitCamera } from "./camera";
import type { Canonical, FrameRange } from "./decode";
import { DEFAULT_FRAME_BUDGET_BYTES, FrameStore, frameAt } from "./frames";
import { LiveSession, type LiveState, liveUrl } from "./live";
import { type DrawMode, SplatRenderer } from "./renderer";

type State = "loading" | "idle" | "generating" | "ready" | "error";

/** What the browser tests read (window.__viewer). */
export interface ViewerHooks {
  ready: boolean;
  state: State;
  lastError: string | null;
  renderCount: number;
  clipId(): string | null;
  frameIndex(): number;
  shownFrame(): number;
  fps(): number;
  numFrames(): number;
  numSplats(): number;
  loadedFrames(): number;
  lastSortMs(): number;
  /** Draws `count` times, waiting for each to finish (gl.finish); answers ms per draw. */
  timeDraws(count: number): number;
  /** The way quads are issued: "instanced" or "expanded" (see renderer.ts); settable. */
  drawMode(mode?: DrawMode): DrawMode;
  /** Caps the bytes of frame data kept (drops chunks far from the playhead past it). */
  setFrameBudget(bytes: number): void;
  camera(): { yaw: number; pitch: number; distance: number; target: number[] };
  /** Live mode: "off", "starting", "live", "stopping", "done" or "error". */
  liveState(): LiveState;
  /** Live frames received from the server in the current (or last) session. */
  liveFrames(): number;
  /** Live frames drawn (newest wins: frames that arrive together are drawn once). */
  liveDrawn(): number;
  /** Index of the live frame on screen (-1 none). */
  liveShown(): number;
  /** Audio chunks sent in the current (or last) session. */
  liveChunks(): number;
  /** Seconds of audio sent in the current (or last) session. */
  liveSeconds(): number;
  /** Largest |sample| sent in the current (or last) session. */
  livePeak(): number;
  /** Milliseconds from sending a chunk to drawing the newest frame it completed. */
  liveLatency(): { last: number; median: number; count: number };
}

declare global {
  interface Window {
    __viewer: ViewerHooks;
  }
}

const POLL_MS = 250;
const LATENCY_WINDOW = 200; // latencies kept for the median

function byId<T extends HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`index.html lacks the element #${id}`);
  return element as T;
}


class Viewer {
  private readonly api = new Api();
  private readonly canvas = byId<HTMLCanvasElement>("view");
  private readonly audio = byId<HTMLAudioElement>("audio");
  private readonly source = byId<HTMLSelectElement>("source");
  private readonly upload = byId<HTMLInputElement>("upload");
  private readonly emotion = byId<HTMLSelectElement>("emotion");
  private readonly intensity = byId<HTMLInputElement>("intensity");
  private readonly intensityValue = byId<HTMLOutputElement>("intensity-value");
  private readonly generateButton = byId<HTMLButtonElement>("generate");
  private readonly progress = byId<HTMLProgressElement>("progress");
  private readonly status = byId<HTMLElement>("status");
  private readonly playButton = byId<HTMLButtonElement>("play");
  private readonly timeline = byId<HTMLInputElement>("timeline");
  private readonly timeLabel = byId<HTMLElement>("time");
  private readonly counter = byId<HTMLElement>("frame-counter");
  private readonly resetButton = byId<HTMLButtonElement>("reset-view");
  private readonly liveButton = byId<HTMLButtonElement>("live");
  private readonly liveStatus = byId<HTMLElement>("live-status");

  private readonly camera = new OrbitCamera(DEFAULT_CAMERA);
  private renderer: SplatRenderer | null = null;
  private config: Config | null = null;
  private canonical: Canonical | null = null;
  private clip: ClipInfo | null = null;
  private store: FrameStore | null = null;
  private uploaded: File | null = null;
  private audioUrl: string | null = null;
  private frameBudget = DEFAULT_FRAME_BUDGET_BYTES;
  private shown = -2; // frame on screen: -1 canonical, -2 nothing yet
  private drawnCamera = -1;
  private dirty = true;
  private scrubbing = false;
  private generation = 0; // bumps per generate, so a stale poll stops
  private live: LiveSession | null = null;
  private liveNext: { index: number; range: FrameRange; sentAt: number } | null = null;
  private liveShownIndex = -1;
  private liveDrawnCount = 0;
  private liveSentAt: number | null = null; // send time of the chunk behind the frame drawn last
  private latencies: number[] = [];

  readonly hooks: ViewerHooks;

  constructor() {
    const self = this;
    this.hooks = {
      ready: false,
      state: "loading",
      lastError: null,
      get renderCount() {
        return self.renderer?.drawCount ?? 0;
      },
      clipId: () => this.clip?.id ?? null,
      frameIndex: () => this.frameIndex(),
      shownFrame: () => this.shown,
      fps: () => this.clip?.fps ?? this.config?.fps ?? 0,
      numFrames: () => this.clip?.num_frames ?? 0,
      numSplats: () => this.renderer?.numSplats ?? 0,
      loadedFrames: () => this.store?.loadedFrames ?? 0,
      lastSortMs: () => this.renderer?.lastSortMs ?? 0,
      timeDraws: (count: number) => this.timeDraws(count),
      drawMode: (mode?: DrawMode) => {
        if (this.renderer === null) return "instanced";
        if (mode === "instanced" || mode === "expanded") {
          this.renderer.mode = mode;
          this.dirty = true;
        }
        return this.renderer.mode;
      },
      setFrameBudget: (bytes: number) => {
        this.frameBudget = bytes;
        this.store?.setBudget(bytes);
      },
      camera: () => ({
        yaw: this.camera.yaw,
        pitch: this.camera.pitch,
        distance: this.camera.distance,
        target: [...this.camera.target],
      }),
      liveState: () => this.live?.state ?? "off",
      liveFrames: () => this.live?.frames ?? 0,
      liveDrawn: () => this.liveDrawnCount,
      liveShown: () => this.liveShownIndex,
      liveChunks: () => this.live?.chunks ?? 0,
      liveSeconds: () => this.live?.sentSeconds ?? 0,
      livePeak: () => this.live?.peak ?? 0,
      liveLatency: () => ({
        last: this.latencies.at(-1) ?? NaN,
        median: median(this.latencies),
        count: this.latencies.length,
      }),
    };
    window.__viewer = this.hooks;
  }

  async start(): Promise<void> {
    this.bindUi();
    try {
      this.renderer = new SplatRenderer(this.canvas);
      const forced = new URLSearchParams(window.location.search).get("draw");
      if (forced === "instanced" || forced === "expanded") this.renderer.mode = forced;
      attachControls(this.canvas, this.camera);
      this.setStatus("loading configuration and the subject's Gaussians…");
      const [config, canonical] = await Promise.all([this.api.config(), this.api.canonical()]);
      this.config = config;
      this.canonical = canonical;
      this.fillChoices(config);
      this.renderer.setSplats(canonical);
      this.shown = -1;
      this.dirty = true;
      this.setState("idle");
      this.setStatus(`subject loaded: ${canonical.n} Gaussians; pick audio and generate`);
    } catch (err) {
      this.fail(err);
    }
    requestAnimationFrame(() => this.tick());
  }

  private bindUi(): void {
    this.intensity.addEventListener("input", () => {
      this.intensityValue.value = Number(this.intensity.value).toFixed(2);
    });
    this.upload.addEventListener("change", () => this.onUpload());
    this.emotion.addEventListener("change", () => this.syncIntensity());
    this.generateButton.addEventListener("click", () => void this.generate());
    this.playButton.addEventListener("click", () => void this.togglePlay());
    this.resetButton.addEventListener("click", () => this.camera.reset());
    this.liveButton.addEventListener("click", () => this.toggleLive());
    window.addEventListener("pagehide", () => this.live?.dispose());
    this.audio.addEventListener("play", () => (this.playButton.textContent = "Pause"));
    this.audio.addEventListener("pause", () => (this.playButton.textContent = "Play"));
    this.audio.addEventListener("error", () => {
      if (this.clip !== null) this.fail(new Error(`the clip's audio failed to load (${this.audio.error?.message ?? "unknown"})`), false);
    });
    const endScrub = () => (this.scrubbing = false);
    this.timeline.addEventListener("pointerdown", () => (this.scrubbing = true));
    this.timeline.addEventListener("pointerup", endScrub);
    this.timeline.addEventListener("change", endScrub);
    this.timeline.addEventListener("input", () => {
      this.audio.currentTime = Number(this.timeline.value);
    });
    window.addEventListener("keydown", (e) => {
      const t = e.target;
      if (t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLButtonElement) return;
      if (e.key === "r" || e.key === "R") this.camera.reset();
      if (e.key === " " && this.clip !== null) {
        e.preventDefault();
        void this.togglePlay();
      }
    });
  }

  private fillChoices(config: Config): void {
    this.source.replaceChildren();
    for (const example of config.examples) {
      this.source.append(new Option(`example: ${example.name} (${example.duration.toFixed(1)} s)`, `example:${example.name}`));
    }
    this.emotion.replaceChildren();
    for (const name of config.emotions) this.emotion.append(new Option(name, name));
    if (config.emotions.includes("neutral")) this.emotion.value = "neutral";
    this.syncIntensity();
    this.upload.title = `audio file up to ${config.max_upload_mb} MB`;
    const [r, g, b] = config.background.map((c) => Math.round(255 * c));
    this.canvas.style.background = `rgb(${r}, ${g}, ${b})`;
    this.generateButton.disabled = false;
    this.liveButton.disabled = config.live === false;
    this.liveButton.title = config.live === false ? "the live mode is off on this server" : "talk into the microphone";
  }

  /** Intensity means nothing for neutral, and for auto the emotion extractor decides it. */
  private syncIntensity(): void {
    const unused = this.emotion.value === "auto" || this.emotion.value === "neutral";
    this.intensity.disabled = unused;
    this.intensity.title = unused ? `not used with ${this.emotion.value}` : "";
  }

  private onUpload(): void {
    const file = this.upload.files?.[0];
    if (file === undefined) return;
    const limit = this.config?.max_upload_mb ?? Infinity;
    if (file.size > limit * 1024 * 1024) {
      this.fail(new Error(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB; the server takes up to ${limit} MB`), false);
      this.upload.value = "";
      return;
    }
    this.uploaded = file;
    let option = [...this.source.options].find((o) => o.value === "upload");
    if (option === undefined) {
      option = new Option("", "upload");
      this.source.prepend(option);
    }
    option.text = `upload: ${file.name}`;
    this.source.value = "upload";
  }

  private toggleLive(): void {
    if (this.live?.active) {
      this.live.stop();
      return;
    }
    const emotion = this.emotion.value;
    if (emotion === "auto") {
      this.fail(new Error("the live mode needs a named emotion: 'auto' judges a whole clip, which a live stream does not have"), false);
      return;
    }
    if (this.canonical === null || this.renderer === null) return;
    this.audio.pause();
    this.latencies = [];
    this.liveDrawnCount = 0;
    this.liveShownIndex = -1;
    this.liveNext = null;
    this.renderer.setSplats(this.canonical); // the frames that come carry no scales
    this.shown = -1;
    this.dirty = true;
    const n = this.canonical.n;
    const session: LiveSession = new LiveSession(liveUrl(window.location), {
      frames: (range, sentAt) => {
        if (this.live !== session || range.n !== n) return;
        this.liveNext = { index: range.start + range.count - 1, range, sentAt }; // newest wins
      },
      state: (state, detail) => this.onLiveState(session, state, detail),
    });
    this.live = session;
    void session.start(emotion, emotion === "neutral" ? null : Number(this.intensity.value));
  }

  private onLiveState(session: LiveSession, state: LiveState, detail?: string): void {
    if (this.live !== session) return;
    const active = session.active;
    this.liveButton.textContent = active ? "Stop" : "Live";
    this.generateButton.disabled = active || this.config === null || this.hooks.state === "generating";
    this.playButton.disabled = active || this.clip === null;
    if (state === "error") this.fail(new Error(`live mode: ${detail ?? "failed"}`), false);
    if (!active) {
      // back to the clip's frame under the playhead (or the subject at rest)
      if (this.clip === null && this.canonical !== null) this.renderer?.setSplats(this.canonical);
      this.shown = this.clip === null ? -1 : -2;
      this.liveNext = null;
      this.dirty = true;
    }
    this.showLiveStatus();
  }

  private showLiveStatus(): void {
    const live = this.live;
    if (live === null) return;
    const { last, median: mid } = this.hooks.liveLatency();
    const latency = Number.isFinite(last) ? `, latency ${last.toFixed(0)} ms (median ${mid.toFixed(0)} ms)` : "";
    const words: Record<LiveState, string> = {
      off: "",
      starting: "live: starting the microphone…",
      live: `live (${live.started?.emotion ?? ""}): ${live.frames} frames`,
      stopping: `live: finishing… ${live.frames} frames`,
      done: `live ended: ${live.frames} frames`,
      error: "live mode stopped",
    };
    this.liveStatus.textContent = words[live.state] + (live.state === "starting" ? "" : latency);
  }

  private async generate(): Promise<void> {
    const token = ++this.generation;
    const choice = this.source.value;
    const request = {
      emotion: this.emotion.value,
      // omitted for auto, so the server uses the extractor's intensity
      intensity: this.emotion.value === "auto" ? undefined : Number(this.intensity.value),
      ...(choice === "upload" && this.uploaded !== null
        ? { audio: this.uploaded }
        : { example: choice.replace(/^example:/, "") }),
    };
    if (choice === "") {
      this.fail(new Error("no audio chosen: pick an example or upload a file"), false);
      return;
    }
    this.generateButton.disabled = true;
    this.setState("generating");
    this.progress.value = 0;
    this.setStatus("sending…");
    try {
      const started = await this.api.generate(request);
      let info = await this.api.clip(started.id);
      while (info.status === "queued" || info.status === "running") {
        if (token !== this.generation) return;
        this.progress.value = info.progress;
        this.setStatus(info.status === "queued" ? "queued…" : `generating… ${Math.round(100 * info.progress)}%`);
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        info = await this.api.clip(started.id);
      }
      if (info.status === "error") throw new Error(`generation failed: ${info.error ?? "no reason given"}`);
      this.progress.value = 1;
      await this.loadClip(info);
    } catch (err) {
      if (err instanceof ApiError && err.status === 429) {
        const wait = err.retryAfter !== null ? ` in ${err.retryAfter} s` : " later";
        this.fail(new Error(`server busy (${err.message}); try again${wait}`), false);
      } else {
        this.fail(err, false);
      }
    } finally {
      if (token === this.generation) this.generateButton.disabled = false;
    }
  }

  private async loadClip(info: ClipInfo): Promise<void> {
    if (this.canonical === null || this.renderer === null) throw new Error("the subject is not loaded");
    if (info.num_gaussians !== this.canonical.n) {
      throw new Error(`clip has ${info.num_gaussians} Gaussians per frame, the subject ${this.canonical.n}`);
    }
    this.store?.dispose();
    this.audio.pause();
    this.hooks.ready = false;
    this.clip = info;
    this.shown = -1;
    this.renderer.setSplats(this.canonical);
    const chunk = Math.max(1, Math.round(info.fps)); // one second per request
    const onChunk = () => {
      this.dirty = true;
    };
    const store = new FrameStore(this.api, info.id, info.num_frames, info.num_gaussians, chunk, onChunk, this.frameBudget);
    this.store = store;
    const firstFrames = store.request(0); // in parallel with the audio
    const metadata = new Promise<void>((resolve, reject) => {
      this.audio.addEventListener("loadedmetadata", () => resolve(), { once: true });
      this.audio.addEventListener("error", () => reject(new Error("the clip's audio failed to load")), { once: true });
    });
    const audio = await this.api.audio(info.id);
    if (this.store !== store) return;
    if (this.audioUrl !== null) URL.revokeObjectURL(this.audioUrl);
    this.audioUrl = URL.createObjectURL(audio);
    this.audio.src = this.audioUrl;
    this.audio.load();
    this.timeline.max = String(info.duration);
    this.timeline.step = "any";
    this.timeline.value = "0";
    this.setStatus(`clip ${info.id}: ${info.num_frames} frames at ${info.fps} fps, emotion ${info.emotion}; loading frames…`);
    await Promise.all([firstFrames, metadata]);
    if (this.store !== store) return;
    this.playButton.disabled = false;
    this.timeline.disabled = false;
    this.hooks.ready = true;
    this.setState("ready");
    this.dirty = true;
    this.setStatus(`clip ${info.id}: ${info.num_frames} frames at ${info.fps} fps, emotion ${info.emotion}`);
  }

  private async togglePlay(): Promise<void> {
    if (this.clip === null) return;
    if (this.audio.paused) {
      if (this.audio.ended) this.audio.currentTime = 0;
      try {
        await this.audio.play();
      } catch (err) {
        this.fail(new Error(`the browser refused to play the audio: ${(err as Error).message}`), false);
      }
    } else {
      this.audio.pause();
    }
  }

  /** floor(audio.currentTime * fps) clamped to the clip; -1 without a clip. */
  frameIndex(): number {
    if (this.clip === null) return -1;
    return frameAt(this.audio.currentTime, this.clip.fps, this.clip.num_frames);
  }

  private drawNow(): void {
    const renderer = this.renderer!;
    const aspect = this.canvas.width / Math.max(1, this.canvas.height);
    renderer.draw(this.camera.view(), this.camera.projection(aspect), this.camera.fovy, this.config?.background ?? [1, 1, 1]);
    this.drawnCamera = this.camera.version;
    this.dirty = false;
  }

  private timeDraws(count: number): number {
    if (this.renderer === null) return NaN;
    const start = performance.now();
    for (let k = 0; k < count; k++) {
      this.drawNow();
      this.renderer.gl.finish();
    }
    return (performance.now() - start) / Math.max(1, count);
  }

  private tick(): void {
    requestAnimationFrame(() => this.tick());
    if (this.liveSentAt !== null) {
      // the live frame drawn in the previous tick has been presented by now
      this.latencies.push(performance.now() - this.liveSentAt);
      if (this.latencies.length > LATENCY_WINDOW) this.latencies.shift();
      this.liveSentAt = null;
      this.liveDrawnCount++;
      this.showLiveStatus();
    }
    const renderer = this.renderer;
    if (renderer === null) return;
    if (renderer.resize()) this.dirty = true;

    const wanted = this.frameIndex();
    if (this.live?.active) {
      const next = this.liveNext;
      if (next !== null) {
        this.liveNext = null;
        renderer.setSplats({ n: next.range.n, ...next.range.frame(next.range.count - 1) });
        this.liveShownIndex = next.index;
        this.shown = -3; // a live frame
        this.drawNow();
        this.liveSentAt = next.sentAt;
      }
    } else if (this.clip !== null && this.store !== null) {
      const n = this.clip.num_frames;
      this.counter.textContent = `frame ${wanted} / ${n}`;
      const time = this.audio.currentTime;
      if (!this.scrubbing) this.timeline.value = String(time);
      this.timeLabel.textContent = `${time.toFixed(2)} / ${this.clip.duration.toFixed(2)} s`;
      this.store.maintain(wanted, (err) => this.fail(err, false));
      const show = this.store.nearestLoaded(wanted);
      if (show >= 0 && show !== this.shown) {
        const frame = this.store.get(show);
        if (frame !== null) {
          renderer.setSplats({ n: this.clip.num_gaussians, ...frame });
          this.shown = show;
          this.dirty = true;
        }
      }
    }
    if (this.dirty || this.drawnCamera !== this.camera.version) this.drawNow();
  }

  private setState(state: State): void {
    this.hooks.state = state;
    document.body.dataset.state = state;
  }

  private setStatus(text: string, isError = false): void {
    this.status.textContent = text;
    this.status.classList.toggle("error", isError);
  }

  /** Shows an error; `fatal` marks the page unusable (no subject or no WebGL). */
  private fail(err: unknown, fatal = true): void {
    const message = err instanceof Error ? err.message : String(err);
    this.hooks.lastError = message;
    this.setStatus(message, true);
    if (fatal) this.setState("error");
    else if (this.hooks.state === "generating") this.setState(this.clip !== null ? "ready" : "idle");
    console.error(err);
  }
}

function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

void new Viewer().start();
