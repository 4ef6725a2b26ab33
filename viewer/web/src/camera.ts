// Orbit camera (yaw/pitch/distance about a target) and its mouse, wheel and touch controls
// through pointer events. World frame: mm, +x subject's left, +y up, +z out of the face; the
// default camera sits on +z at (0, -30, 650) looking at (0, -30, 0) with a 30 degree vertical fov.

import { add, clamp, lookAt, type Mat4, perspective, scale, type Vec3 } from "./math";

export interface CameraDefaults {
  target: Vec3;
  distance: number; // mm
  fovyDeg: number;
}

export const DEFAULT_CAMERA: CameraDefaults = { target: [0, -30, 0], distance: 650, fovyDeg: 30 };

const MIN_DISTANCE = 80;
const MAX_DISTANCE = 5000;
const MAX_PITCH = (89 * Math.PI) / 180;

export class OrbitCamera {
  target: Vec3;
  distance: number;
  yaw = 0; // radians about +y; 0 = frontal (camera on +z)
  pitch = 0; // radians; positive looks from above
  readonly fovy: number; // radians
  /** Bumped on every change, so the renderer knows when to re-sort and redraw. */
  version = 0;

  constructor(readonly defaults: CameraDefaults = DEFAULT_CAMERA) {
    this.target = [...defaults.target] as Vec3;
    this.distance = defaults.distance;
    this.fovy = (defaults.fovyDeg * Math.PI) / 180;
  }

  reset(): void {
    this.target = [...this.defaults.target] as Vec3;
    this.distance = this.defaults.distance;
    this.yaw = 0;
    this.pitch = 0;
    this.version++;
  }

  eye(): Vec3 {
    const cp = Math.cos(this.pitch);
    const offset: Vec3 = [cp * Math.sin(this.yaw), Math.sin(this.pitch), cp * Math.cos(this.yaw)];
    return add(this.target, scale(offset, this.distance));
  }

  view(): Mat4 {
    return lookAt(this.eye(), this.target, [0, 1, 0]);
  }

  projection(aspect: number): Mat4 {
    const near = Math.max(1, this.distance * 0.02);
    return perspective(this.fovy, aspect, near, this.distance * 20 + 2000);
  }

  /** Rotates by a drag of (dx, dy) pixels on a viewport `height` pixels tall. */
  orbit(dx: number, dy: number, height: number): void {
    const radPerPixel = Math.PI / Math.max(1, height);
    this.yaw -= dx * radPerPixel;
    this.pitch = clamp(this.pitch + dy * radPerPixel, -MAX_PITCH, MAX_PITCH);
    this.version++;
  }

  /** Moves the target so the scene follows a drag of (dx, dy) pixels. */
  pan(dx: number, dy: number, height: number): void {
    const mmPerPixel = (2 * this.distance * Math.tan(this.fovy / 2)) / Math.max(1, height);
    const v = this.view(); // rows of the rotation: camera right and up in world coordinates
    const right: Vec3 = [v[0], v[4], v[8]];
    const up: Vec3 = [v[1], v[5], v[9]];
    this.target = add(this.target, add(scale(right, -dx * mmPerPixel), scale(up, dy * mmPerPixel)));
    this.version++;
  }

  /** Multiplies the distance by `factor` (< 1 zooms in). */
  zoom(factor: number): void {
    this.distance = clamp(this.distance * factor, MIN_DISTANCE, MAX_DISTANCE);
    this.version++;
  }
}

/**
 * Wires pointer and wheel events of `element` to `camera`: one pointer drags to orbit (right or
 * middle button, or shift/ctrl held, pans), two touch pointers pinch to zoom and move to pan, the
 * wheel zooms. Returns a function that removes the listeners.
 */
export function attachControls(element: HTMLElement, camera: OrbitCamera): () => void {
  const pointers = new Map<number, { x: number; y: number }>();
  let panning = false;
  let pinchDistance = 0;
  let pinchCentre = { x: 0, y: 0 };

  const height = () => element.clientHeight || 1;
  const twoPointerState = () => {
    const [a, b] = [...pointers.values()];
    return { distance: Math.hypot(a.x - b.x, a.y - b.y), centre: { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 } };
  };

  const onDown = (e: PointerEvent) => {
    try {
      element.setPointerCapture(e.pointerId);
    } catch {
      // a synthetic pointer (no active pointer with this id) cannot be captured; drag anyway
    }
    pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
    panning = e.button === 1 || e.button === 2 || e.shiftKey || e.ctrlKey;
    if (pointers.size === 2) {
      const s = twoPointerState();
      pinchDistance = s.distance;
      pinchCentre = s.centre;
    }
    e.preventDefault();
  };
  const onMove = (e: PointerEvent) => {
    const last = pointers.get(e.pointerId);
    if (last === undefined) return;
    const dx = e.clientX - last.x;
    const dy = e.clientY - last.y;
    last.x = e.clientX;
    last.y = e.clientY;
    if (pointers.size === 1) {
      if (panning) camera.pan(dx, dy, height());
      else camera.orbit(dx, dy, height());
    } else if (pointers.size === 2) {
      const s = twoPointerState();
      if (pinchDistance > 0 && s.distance > 0) camera.zoom(pinchDistance / s.distance);
      camera.pan(s.centre.x - pinchCentre.x, s.centre.y - pinchCentre.y, height());
      pinchDistance = s.distance;
      pinchCentre = s.centre;
    }
    e.preventDefault();
  };
  const onUp = (e: PointerEvent) => {
    pointers.delete(e.pointerId);
    if (element.hasPointerCapture(e.pointerId)) element.releasePointerCapture(e.pointerId);
    pinchDistance = 0;
  };
  const onWheel = (e: WheelEvent) => {
    const pixels = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaMode === 2 ? e.deltaY * 400 : e.deltaY;
    camera.zoom(Math.exp(pixels * 0.001));
    e.preventDefault();
  };
  const onContextMenu = (e: Event) => e.preventDefault();

  element.addEventListener("pointerdown", onDown);
  element.addEventListener("pointermove", onMove);
  element.addEventListener("pointerup", onUp);
  element.addEventListener("pointercancel", onUp);
  element.addEventListener("wheel", onWheel, { passive: false });
  element.addEventListener("contextmenu", onContextMenu);
  return () => {
    element.removeEventListener("pointerdown", onDown);
    element.removeEventListener("pointermove", onMove);
    element.removeEventListener("pointerup", onUp);
    element.removeEventListener("pointercancel", onUp);
    element.removeEventListener("wheel", onWheel);
    element.removeEventListener("contextmenu", onContextMenu);
  };
}
