// Client of the viewer's HTTP API (docs/viewer.md). Errors carry the server's
// {"detail": "..."} message so the page can show it as is.

import { type Canonical, decodeCanonical, decodeFrames, type FrameRange } from "./decode";

export interface Config {
  emotions: string[];
  fps: number;
  examples: { name: string; duration: number }[];
  max_upload_mb: number;
  background: [number, number, number];
  /** The server offers the live mode (`WS /api/live`). */
  live?: boolean;
}

export type ClipStatus = "queued" | "running" | "done" | "error";

export interface ClipInfo {
  id: string;
  status: ClipStatus;
  progress: number;
  error: string | null;
  fps: number;
  num_frames: number;
  num_gaussians: number;
  duration: number;
  emotion: string;
}

export interface GenerateRequest {
  audio?: File | Blob;
  example?: string;
  emotion: string;
  /** 0..1; left out for "auto" (the emotion extractor's intensity is used). */
  intensity?: number;
}

/** An HTTP error answer; `retryAfter` is set for 429 (seconds). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly retryAfter: number | null = null,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

async function failure(response: Response): Promise<ApiError> {
  let detail = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && typeof body.detail === "string") detail = body.detail;
    else if (body && body.detail !== undefined) detail = JSON.stringify(body.detail);
  } catch {
    // not JSON: keep the status line
  }
  const retry = response.headers.get("Retry-After");
  return new ApiError(response.status, detail, retry === null ? null : Number(retry));
}

async function getJson<T>(url: string): Promise<T> {
  const response = await fetch(url);
  if (!response.ok) throw await failure(response);
  return (await response.json()) as T;
}

async function getBinary(url: string): Promise<ArrayBuffer> {
  const response = await fetch(url);
  if (!response.ok) throw await failure(response);
  return await response.arrayBuffer();
}

export class Api {
  constructor(private readonly base = "") {}

  config(): Promise<Config> {
    return getJson<Config>(`${this.base}/api/config`);
  }

  async canonical(): Promise<Canonical> {
    return decodeCanonical(await getBinary(`${this.base}/api/canonical.bin`));
  }

  /** Starts a clip; answers its id and status (200 "done" when the server had it cached). */
  async generate(request: GenerateRequest): Promise<{ id: string; status: ClipStatus }> {
    const form = new FormData();
    if (request.audio !== undefined) {
      const name = request.audio instanceof File ? request.audio.name : "audio";
      form.append("audio", request.audio, name);
    } else if (request.example !== undefined) {
      form.append("example", request.example);
    }
    form.append("emotion", request.emotion);
    if (request.intensity !== undefined) form.append("intensity", String(request.intensity));
    const response = await fetch(`${this.base}/api/clips`, { method: "POST", body: form });
    if (!response.ok) throw await failure(response);
    return await response.json();
  }

  clip(id: string): Promise<ClipInfo> {
    return getJson<ClipInfo>(`${this.base}/api/clips/${encodeURIComponent(id)}`);
  }

  /**
   * The clip's audio as a Blob: played from an object URL, so seeking never depends on the
   * server answering HTTP range requests (a media element cannot seek a stream without them).
   */
  async audio(id: string): Promise<Blob> {
    const response = await fetch(`${this.base}/api/clips/${encodeURIComponent(id)}/audio`);
    if (!response.ok) throw await failure(response);
    return await response.blob();
  }

  async frames(id: string, start: number, count: number, n: number): Promise<FrameRange> {
    const url = `${this.base}/api/clips/${encodeURIComponent(id)}/frames.bin?start=${start}&count=${count}`;
    return decodeFrames(await getBinary(url), n);
  }
}
