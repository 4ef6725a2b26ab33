// WebGL2 Gaussian splat renderer: one quad per Gaussian. Per-Gaussian data lives in textures
// (means, scales, quaternions as RGBA32F, colours as RGBA8) read with texelFetch by a sorted
// splat index; the vertex shader builds the 3D covariance R S S^T R^T, projects it to a 2D
// screen covariance with the perspective Jacobian (EWA splatting), and stretches the quad over
// up to 3 sigma along its eigenvectors; the fragment shader weights opacity by the Gaussian and
// writes premultiplied colour, blended back to front with (ONE, ONE_MINUS_SRC_ALPHA).
//
// Two ways to issue the quads, same shader maths and the same image:
// - "instanced" (default): a 4-vertex strip instanced N times, the sorted index a per-instance
//   attribute. The natural fit for GPUs.
// - "expanded": one non-instanced draw of 6N vertices, splat slot = gl_VertexID / 6, the sorted
//   index read from an R32UI texture. Software WebGL (SwiftShader, llvmpipe) pays a large
//   per-instance cost (measured 425 ms vs 115 ms per draw of 20k splats on the 2-core VM), so
//   it is picked there.

import type { Mat4 } from "./math";
import { DepthSorter } from "./sort";

export const TEXTURE_WIDTH = 2048; // WebGL2 guarantees MAX_TEXTURE_SIZE >= 2048

export type DrawMode = "instanced" | "expanded";

function vertexShader(mode: DrawMode): string {
  const source = mode === "instanced"
    ? `layout(location = 0) in uint aIndex; // splat index per instance, sorted far to near
#define CORNER_ID gl_VertexID
#define SPLAT_INDEX aIndex`
    : `uniform highp usampler2D uOrder; // splat indices, sorted far to near
#define CORNER_ID (gl_VertexID - 6 * (gl_VertexID / 6))
#define SPLAT_INDEX texelFetch(uOrder, ivec2((gl_VertexID / 6) % ${TEXTURE_WIDTH}, (gl_VertexID / 6) / ${TEXTURE_WIDTH}), 0).r`;
  return `#version 300 es
precision highp float;
precision highp int;
precision highp sampler2D;

${source}

uniform sampler2D uMeans;  // xyz mm
uniform sampler2D uScales; // xyz mm (activated)
uniform sampler2D uQuats;  // w,x,y,z
uniform sampler2D uColors; // rgba 0..1
uniform mat4 uView;
uniform mat4 uProj;
uniform vec2 uFocal;    // pixels
uniform vec2 uViewport; // pixels
uniform vec2 uTanHalfFov;

out vec4 vColor;
out vec2 vPos; // offset from the centre in units of the splat's standard deviations

// a 4-vertex strip (instanced) or two triangles (expanded); the first four agree
const vec2 CORNERS[6] = vec2[6](
  vec2(-1.0, -1.0), vec2(1.0, -1.0), vec2(-1.0, 1.0), vec2(1.0, 1.0), vec2(1.0, -1.0), vec2(-1.0, 1.0));
const float MAX_EXTENT = 3.0; // quad half-size cap in standard deviations

void main() {
  uint index = SPLAT_INDEX;
  ivec2 tc = ivec2(int(index % ${TEXTURE_WIDTH}u), int(index / ${TEXTURE_WIDTH}u));
  vec3 mean = texelFetch(uMeans, tc, 0).xyz;
  vec4 cam = uView * vec4(mean, 1.0);
  float tz = -cam.z; // depth in front of the camera
  vec4 color = texelFetch(uColors, tc, 0);
  if (tz < 1.0 || color.a < 1.0 / 255.0) {
    gl_Position = vec4(0.0, 0.0, 2.0, 1.0); // behind the camera or invisible: clipped away
    return;
  }
  vec4 clip = uProj * cam;

  vec3 s = texelFetch(uScales, tc, 0).xyz;
  vec4 q = texelFetch(uQuats, tc, 0);
  q /= max(length(q), 1e-8);
  float w = q.x, x = q.y, y = q.z, z = q.w;
  mat3 R = mat3( // columns
    1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y + w * z), 2.0 * (x * z - w * y),
    2.0 * (x * y - w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z + w * x),
    2.0 * (x * z + w * y), 2.0 * (y * z - w * x), 1.0 - 2.0 * (x * x + y * y));
  mat3 M = R * mat3(s.x, 0.0, 0.0, 0.0, s.y, 0.0, 0.0, 0.0, s.z);
  mat3 sigma = M * transpose(M); // 3D covariance, world frame

  // Jacobian of (u, v) = focal * (x, y) / depth at the (frustum-clamped) centre; v points up.
  vec2 lim = 1.3 * uTanHalfFov;
  float tx = clamp(cam.x / tz, -lim.x, lim.x) * tz;
  float ty = clamp(cam.y / tz, -lim.y, lim.y) * tz;
  mat3 J = mat3(
    uFocal.x / tz, 0.0, 0.0,
    0.0, uFocal.y / tz, 0.0,
    uFocal.x * tx / (tz * tz), uFocal.y * ty / (tz * tz), 0.0);
  mat3 T = J * mat3(uView);
  mat3 cov = T * sigma * transpose(T);
  float a = cov[0][0] + 0.3; // 0.3 px^2: low-pass so sub-pixel splats still cover a pixel
  float b = cov[0][1];
  float c = cov[1][1] + 0.3;

  float mid = 0.5 * (a + c);
  float rad = length(vec2(0.5 * (a - c), b));
  float l1 = mid + rad;
  float l2 = max(mid - rad, 0.05);
  vec2 d1 = abs(b) > 1e-9 ? normalize(vec2(b, l1 - a)) : (a >= c ? vec2(1.0, 0.0) : vec2(0.0, 1.0));
  vec2 d2 = vec2(-d1.y, d1.x);
  float r1 = min(sqrt(l1), 1024.0);
  float r2 = min(sqrt(l2), 1024.0);

  // Beyond r standard deviations with opacity * exp(-r^2 / 2) < 1/255 the fragment shader
  // discards anyway, so the quad stops there (fewer fragments for faint splats, same image).
  float extent = min(MAX_EXTENT, sqrt(2.0 * log(255.0 * color.a)));
  vec2 corner = CORNERS[CORNER_ID];
  vec2 offsetPx = extent * (corner.x * r1 * d1 + corner.y * r2 * d2);
  gl_Position = clip + vec4(offsetPx * 2.0 / uViewport * clip.w, 0.0, 0.0);
  vPos = extent * corner;
  vColor = color;
}
`;
}

const FRAGMENT_SHADER = `#version 300 es
precision highp float;

in vec4 vColor;
in vec2 vPos;
out vec4 fragColor;

void main() {
  float r2 = dot(vPos, vPos);
  if (r2 > 9.0) discard;
  float alpha = min(0.99, vColor.a * exp(-0.5 * r2));
  if (alpha < 1.0 / 255.0) discard;
  fragColor = vec4(vColor.rgb * alpha, alpha); // premultiplied
}
`;

/** Per-splat arrays the renderer draws; scales may be omitted to keep the previous ones. */
export interface SplatData {
  n: number;
  means: Float32Array; // [N*3]
  quats: Float32Array; // [N*4] w,x,y,z
  rgba: Uint8Array; // [N*4]
  scales?: Float32Array; // [N*3]
}

export class RendererError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RendererError";
  }
}

const UNIFORMS = ["uMeans", "uScales", "uQuats", "uColors", "uOrder", "uView", "uProj", "uFocal", "uViewport", "uTanHalfFov"];

interface Program {
  program: WebGLProgram;
  uniforms: Record<string, WebGLUniformLocation | null>;
}

/** "expanded" when the context renders in software (SwiftShader, llvmpipe), else "instanced". */
export function preferredDrawMode(gl: WebGL2RenderingContext): DrawMode {
  const info = gl.getExtension("WEBGL_debug_renderer_info");
  const name = String(gl.getParameter(info !== null ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
  return /swiftshader|llvmpipe|softpipe|software/i.test(name) ? "expanded" : "instanced";
}

export class SplatRenderer {
  readonly gl: WebGL2RenderingContext;
  private readonly programs: Record<DrawMode, Program>;
  private readonly vao: WebGLVertexArrayObject;
  private readonly emptyVao: WebGLVertexArrayObject;
  private readonly indexBuffer: WebGLBuffer;
  private readonly orderTexture: WebGLTexture;
  private orderStaging = new Uint32Array(0);
  /** How the quads are issued (see the file comment); both give the same image. */
  mode: DrawMode;
  private readonly textures: Record<"means" | "scales" | "quats" | "colors", WebGLTexture>;
  private readonly sorter = new DepthSorter();
  private n = 0;
  private rows = 0;
  private means: Float32Array = new Float32Array(0);
  private staging = new Float32Array(0);
  private stagingBytes = new Uint8Array(0);
  /** Number of draw calls made (a test hook counts them). */
  drawCount = 0;
  /** Milliseconds the last depth sort (and order upload) took. */
  lastSortMs = 0;

  constructor(readonly canvas: HTMLCanvasElement) {
    const gl = canvas.getContext("webgl2", {
      alpha: false,
      antialias: false,
      depth: false,
      premultipliedAlpha: true,
      preserveDrawingBuffer: false,
    });
    if (gl === null) {
      throw new RendererError(
        "this browser gives no WebGL2 context; use a current Chromium or Firefox with hardware " +
          "acceleration or software WebGL enabled",
      );
    }
    this.gl = gl;
    const build = (mode: DrawMode): Program => {
      const program = link(gl, vertexShader(mode), FRAGMENT_SHADER);
      const uniforms: Record<string, WebGLUniformLocation | null> = {};
      for (const name of UNIFORMS) uniforms[name] = gl.getUniformLocation(program, name);
      return { program, uniforms };
    };
    this.programs = { instanced: build("instanced"), expanded: build("expanded") };
    this.mode = preferredDrawMode(gl);
    this.orderTexture = makeTexture(gl);
    this.emptyVao = gl.createVertexArray()!;
    this.vao = gl.createVertexArray()!;
    this.indexBuffer = gl.createBuffer()!;
    gl.bindVertexArray(this.vao);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.indexBuffer);
    gl.enableVertexAttribArray(0);
    gl.vertexAttribIPointer(0, 1, gl.UNSIGNED_INT, 0, 0);
    gl.vertexAttribDivisor(0, 1);
    gl.bindVertexArray(null);
    this.textures = {
      means: makeTexture(gl),
      scales: makeTexture(gl),
      quats: makeTexture(gl),
      colors: makeTexture(gl),
    };
  }

  get numSplats(): number {
    return this.n;
  }

  /** Uploads the splats to draw (all of them when N changes; scales only when given). */
  setSplats(data: SplatData): void {
    const gl = this.gl;
    const n = data.n;
    if (n !== this.n && data.scales === undefined) {
      throw new RendererError(`splat count changed from ${this.n} to ${n} without new scales`);
    }
    const rows = Math.max(1, Math.ceil(n / TEXTURE_WIDTH));
    const capacity = rows * TEXTURE_WIDTH;
    if (this.staging.length < 4 * capacity) {
      this.staging = new Float32Array(4 * capacity);
      this.stagingBytes = new Uint8Array(4 * capacity);
    }
    this.n = n;
    this.rows = rows;
    this.means = data.means;
    this.uploadFloat(this.textures.means, data.means, 3, n);
    this.uploadFloat(this.textures.quats, data.quats, 4, n);
    if (data.scales !== undefined) this.uploadFloat(this.textures.scales, data.scales, 3, n);
    const bytes = this.stagingBytes.subarray(0, 4 * capacity);
    bytes.set(data.rgba.subarray(0, 4 * n));
    bytes.fill(0, 4 * n);
    gl.bindTexture(gl.TEXTURE_2D, this.textures.colors);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, TEXTURE_WIDTH, rows, 0, gl.RGBA, gl.UNSIGNED_BYTE, bytes);
  }

  private uploadFloat(texture: WebGLTexture, values: Float32Array, components: 3 | 4, n: number): void {
    const gl = this.gl;
    const capacity = this.rows * TEXTURE_WIDTH;
    const staging = this.staging.subarray(0, 4 * capacity);
    if (components === 4) {
      staging.set(values.subarray(0, 4 * n));
    } else {
      for (let i = 0; i < n; i++) {
        staging[4 * i] = values[3 * i];
        staging[4 * i + 1] = values[3 * i + 1];
        staging[4 * i + 2] = values[3 * i + 2];
        staging[4 * i + 3] = 1;
      }
    }
    staging.fill(0, 4 * n);
    gl.bindTexture(gl.TEXTURE_2D, texture);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA32F, TEXTURE_WIDTH, this.rows, 0, gl.RGBA, gl.FLOAT, staging);
  }

  /** Resizes the drawing buffer to the canvas' CSS size times the device pixel ratio. */
  resize(): boolean {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(this.canvas.clientWidth * dpr));
    const h = Math.max(1, Math.round(this.canvas.clientHeight * dpr));
    if (this.canvas.width === w && this.canvas.height === h) return false;
    this.canvas.width = w;
    this.canvas.height = h;
    return true;
  }

  /** Sorts the splats for `view` and draws them over `background` (rgb 0..1). */
  draw(view: Mat4, proj: Mat4, fovy: number, background: [number, number, number]): void {
    const gl = this.gl;
    const width = gl.drawingBufferWidth;
    const height = gl.drawingBufferHeight;
    gl.viewport(0, 0, width, height);
    gl.clearColor(background[0], background[1], background[2], 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    this.drawCount++;
    if (this.n === 0) return;

    const t0 = performance.now();
    const order = this.sorter.sort(this.means, this.n, view);
    const { program, uniforms: u } = this.programs[this.mode];
    gl.useProgram(program);
    if (this.mode === "instanced") {
      gl.bindBuffer(gl.ARRAY_BUFFER, this.indexBuffer);
      gl.bufferData(gl.ARRAY_BUFFER, order, gl.DYNAMIC_DRAW);
    } else {
      const capacity = this.rows * TEXTURE_WIDTH;
      if (this.orderStaging.length !== capacity) this.orderStaging = new Uint32Array(capacity);
      this.orderStaging.set(order);
      gl.activeTexture(gl.TEXTURE4);
      gl.bindTexture(gl.TEXTURE_2D, this.orderTexture);
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.R32UI, TEXTURE_WIDTH, this.rows, 0, gl.RED_INTEGER, gl.UNSIGNED_INT, this.orderStaging);
      gl.uniform1i(u.uOrder, 4);
    }
    this.lastSortMs = performance.now() - t0;

    const tanY = Math.tan(fovy / 2);
    const tanX = (tanY * width) / height;
    const units: [string, WebGLTexture][] = [
      ["uMeans", this.textures.means],
      ["uScales", this.textures.scales],
      ["uQuats", this.textures.quats],
      ["uColors", this.textures.colors],
    ];
    units.forEach(([name, texture], unit) => {
      gl.activeTexture(gl.TEXTURE0 + unit);
      gl.bindTexture(gl.TEXTURE_2D, texture);
      gl.uniform1i(u[name], unit);
    });
    gl.uniformMatrix4fv(u.uView, false, view);
    gl.uniformMatrix4fv(u.uProj, false, proj);
    gl.uniform2f(u.uFocal, width / (2 * tanX), height / (2 * tanY));
    gl.uniform2f(u.uViewport, width, height);
    gl.uniform2f(u.uTanHalfFov, tanX, tanY);

    gl.disable(gl.DEPTH_TEST);
    gl.disable(gl.CULL_FACE);
    gl.enable(gl.BLEND);
    gl.blendFunc(gl.ONE, gl.ONE_MINUS_SRC_ALPHA); // premultiplied "over", back to front
    if (this.mode === "instanced") {
      gl.bindVertexArray(this.vao);
      gl.drawArraysInstanced(gl.TRIANGLE_STRIP, 0, 4, this.n);
    } else {
      gl.bindVertexArray(this.emptyVao);
      gl.drawArrays(gl.TRIANGLES, 0, 6 * this.n);
    }
    gl.bindVertexArray(null);
  }
}

function makeTexture(gl: WebGL2RenderingContext): WebGLTexture {
  const texture = gl.createTexture()!;
  gl.bindTexture(gl.TEXTURE_2D, texture);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
  return texture;
}

function compile(gl: WebGL2RenderingContext, type: number, source: string): WebGLShader {
  const shader = gl.createShader(type)!;
  gl.shaderSource(shader, source);
  gl.compileShader(shader);
  if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) {
    const log = gl.getShaderInfoLog(shader);
    gl.deleteShader(shader);
    throw new RendererError(`splat shader failed to compile: ${log}`);
  }
  return shader;
}

function link(gl: WebGL2RenderingContext, vs: string, fs: string): WebGLProgram {
  const program = gl.createProgram()!;
  gl.attachShader(program, compile(gl, gl.VERTEX_SHADER, vs));
  gl.attachShader(program, compile(gl, gl.FRAGMENT_SHADER, fs));
  if (vs.includes("in uint aIndex")) gl.bindAttribLocation(program, 0, "aIndex");
  gl.linkProgram(program);
  if (!gl.getProgramParameter(program, gl.LINK_STATUS)) {
    throw new RendererError(`splat shader failed to link: ${gl.getProgramInfoLog(program)}`);
  }
  return program;
}
