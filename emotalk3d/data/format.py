"""The dataset format, version 1 (DESIGN.md section 4): reader, writer and validator.

    <root>/<subject>/
      calibration.json        # {"format_version": 1,
                              #  "cameras": [{id, K, world_to_cam, width, height}]}
      template.npz            # vertices [P,3] f32 mm, faces [F,3] i32, uvs [P,2] f32,
                              # region_<name> [P] bool (at least face, lips, eyes, mouth_interior)
      sequences/<seq>/
        audio.wav             # 16 kHz mono
        meta.json             # emotion, intensity, sentence, fps, num_frames (+ sentence_id, split)
        meshes.npy            # [T, P, 3] float32, mm
        images/<camera>/<frame:05d>.png (or .jpg)
        masks/<camera>/<frame:05d>.png   # optional foreground masks

A sequence may carry no images/ (geometry and audio only, for speech-to-geometry training);
`SequenceInfo.has_images` says which. Everything is read lazily: opening a dataset reads only
the JSON files and the template. Frames are numbered from 0. docs/dataset.md is the full spec.

Every write is atomic: the file is written to a hidden temporary file in the same folder and
moved into place with `os.replace`, so an interrupted generator never leaves a half-written file
under a final name. Every read validates shapes and dtypes and raises `DatasetFormatError`
naming the file, what was expected, what came, and the fix.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotalk3d.constants import EMOTIONS

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
REQUIRED_REGIONS = ("face", "lips", "eyes", "mouth_interior")
SAMPLE_RATE = 16000
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
META_KEYS = ("emotion", "intensity", "sentence", "fps", "num_frames", "sentence_id", "split")

_CHECK_HINT = "run `emotalk3d data check DIR` for a full report"
_REGEN_HINT = "regenerate it with `emotalk3d data synth` or rewrite it with emotalk3d.data.format"


class DatasetFormatError(ValueError):
    """A dataset folder is not in the dataset format; the message names the file and the fix."""


@dataclass(frozen=True)
class Camera:
    """One calibrated camera (OpenCV convention, millimetres)."""

    id: str
    K: np.ndarray  # [3, 3] pixel intrinsics
    world_to_cam: np.ndarray  # [4, 4]
    width: int
    height: int


@dataclass
class Template:
    """A subject's neutral mesh: the topology every per-frame mesh shares."""

    vertices: np.ndarray  # [P, 3] float32, mm
    faces: np.ndarray  # [F, 3] int32
    uvs: np.ndarray  # [P, 2] float32 in [0, 1]
    regions: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [P] bool


@dataclass
class SequenceMeta:
    """Contents of a sequence's meta.json."""

    emotion: str
    intensity: float
    sentence: str
    fps: float
    num_frames: int
    sentence_id: str | None = None
    split: str | None = None  # one of SPLITS, or None when unknown
    extra: dict = field(default_factory=dict)  # any other keys, kept on round trip


@dataclass
class SequenceInfo:
    """One sequence of one subject; heavy data is loaded on demand.

    `num_points` is the subject template's vertex count P when known (set by `read_subject`);
    `load_meshes` then checks the meshes against it.
    """

    name: str
    path: Path
    meta: SequenceMeta
    has_images: bool
    num_points: int | None = None

    def load_meshes(self) -> np.ndarray:  # [T, P, 3] float32
        """The per-frame meshes, checked against meta.json's num_frames and the template's P."""
        return read_meshes(
            self.path / "meshes.npy", num_frames=self.meta.num_frames, num_points=self.num_points
        )

    def load_audio(self) -> tuple[np.ndarray, int]:  # ([S] float32, sample_rate)
        """The sequence's audio as float32 in [-1, 1] at 16 kHz, mono."""
        return read_audio(self.path / "audio.wav")

    def image_path(self, camera_id: str, frame: int) -> Path:
        """Path of the image of `camera_id` at `frame` (.png, else .jpg/.jpeg if present).

        When no file exists the .png path is returned (the name a writer would use).
        """
        return _frame_file(self.path / "images" / camera_id, frame)

    def mask_path(self, camera_id: str, frame: int) -> Path | None:
        """Path of the foreground mask of `camera_id` at `frame`, or None when it has none."""
        path = _frame_file(self.path / "masks" / camera_id, frame)
        return path if path.is_file() else None

    def load_image(self, camera_id: str, frame: int) -> np.ndarray:  # [H, W, 3] float32 in [0, 1]
        """The RGB image of `camera_id` at `frame`; DatasetFormatError names a missing or
        unreadable file."""
        if not self.has_images:
            raise DatasetFormatError(
                f"sequence {self.path} has no images/ folder (a geometry-and-audio-only "
                f"sequence); use sequences whose has_images is True for appearance training"
            )
        _check_frame(frame, self.meta.num_frames, self.path)
        return read_image(self.image_path(camera_id, frame))

    def load_mask(self, camera_id: str, frame: int) -> np.ndarray | None:  # [H, W] float32
        """The foreground mask in [0, 1] (1 = head), or None when the sequence has none."""
        _check_frame(frame, self.meta.num_frames, self.path)
        path = self.mask_path(camera_id, frame)
        return None if path is None else read_mask(path)


@dataclass
class SubjectInfo:
    """One subject: calibration, template and sequences (sorted by name)."""

    name: str
    path: Path
    cameras: list[Camera]
    template: Template
    sequences: list[SequenceInfo]

    def camera(self, camera_id: str) -> Camera:
        """The camera called `camera_id`; KeyError listing the known ids otherwise."""
        for cam in self.cameras:
            if cam.id == camera_id:
                return cam
        known = ", ".join(c.id for c in self.cameras)
        raise KeyError(f"subject {self.name!r} has no camera {camera_id!r}; cameras: {known}")

    def split(self, split: str) -> list[SequenceInfo]:
        """The sequences whose meta.json names `split` (one of SPLITS)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return [s for s in self.sequences if s.meta.split == split]


@dataclass
class CheckReport:
    """The outcome of `check_dataset`: named problems (empty when valid) and a summary."""

    problems: list[str]
    summary: dict

    @property
    def ok(self) -> bool:
        return not self.problems


# --------------------------------------------------------------------------------------------
# helpers


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a hidden temporary file beside `path`, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_json(path: Path, obj: dict) -> None:
    text = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    _atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DatasetFormatError(f"{path} is missing; {_CHECK_HINT}")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetFormatError(f"{path} is not valid JSON ({err}); {_REGEN_HINT}") from err
    if not isinstance(obj, dict):
        raise DatasetFormatError(
            f"{path} must hold a JSON object, got {type(obj).__name__}; {_REGEN_HINT}"
        )
    return obj


def _frame_file(folder: Path, frame: int) -> Path:
    stem = f"{int(frame):05d}"
    for ext in IMAGE_EXTENSIONS:
        path = folder / f"{stem}{ext}"
        if path.is_file():
            return path
    return folder / f"{stem}.png"


def _check_frame(frame: int, num_frames: int, where: Path) -> None:
    if not 0 <= int(frame) < num_frames:
        raise IndexError(f"frame {frame} is out of range for {where} ({num_frames} frames)")


def _matrix(value, shape: tuple[int, ...], what: str, path: Path) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DatasetFormatError(f"{path}: {what} must be numbers, got {value!r}") from err
    if arr.shape != shape or not np.all(np.isfinite(arr)):
        raise DatasetFormatError(
            f"{path}: {what} must be a finite {'x'.join(map(str, shape))} matrix, "
            f"got shape {arr.shape}; {_REGEN_HINT}"
        )
    return arr


def _validate_camera(cam: Camera, where: Path) -> Camera:
    if not isinstance(cam.id, str) or not cam.id or "/" in cam.id or cam.id.startswith("."):
        raise DatasetFormatError(
            f"{where}: camera id must be a non-empty folder-safe string, got {cam.id!r}"
        )
    K = _matrix(cam.K, (3, 3), f"camera {cam.id!r} K", where)
    w2c = _matrix(cam.world_to_cam, (4, 4), f"camera {cam.id!r} world_to_cam", where)
    if not np.allclose(w2c[3], [0.0, 0.0, 0.0, 1.0]):
        raise DatasetFormatError(
            f"{where}: camera {cam.id!r} world_to_cam's last row must be [0, 0, 0, 1], "
            f"got {w2c[3].tolist()}"
        )
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise DatasetFormatError(
            f"{where}: camera {cam.id!r} K must have positive focal lengths, "
            f"got fx={K[0, 0]}, fy={K[1, 1]}"
        )
    width, height = cam.width, cam.height
    if isinstance(width, bool) or isinstance(height, bool):
        raise DatasetFormatError(f"{where}: camera {cam.id!r} width/height must be integers")
    if int(width) != width or int(height) != height or width <= 0 or height <= 0:
        raise DatasetFormatError(
            f"{where}: camera {cam.id!r} width and height must be positive integers, "
            f"got {width}x{height}"
        )
    return Camera(id=cam.id, K=K, world_to_cam=w2c, width=int(width), height=int(height))


# --------------------------------------------------------------------------------------------
# calibration.json


def write_calibration(subject_dir: str | Path, cameras: list[Camera]) -> None:
    """Write `<subject_dir>/calibration.json` (format_version and the cameras, in order).

    Args:
        subject_dir: the subject folder (created if missing).
        cameras: at least one camera; ids must be unique.
    """
    path = Path(subject_dir) / "calibration.json"
    if not cameras:
        raise DatasetFormatError(f"{path}: expected at least one camera, got none")
    checked = [_validate_camera(cam, path) for cam in cameras]
    ids = [c.id for c in checked]
    if len(set(ids)) != len(ids):
        dup = sorted(i for i, n in Counter(ids).items() if n > 1)
        raise DatasetFormatError(f"{path}: camera ids must be unique, repeated: {dup}")
    obj = {
        "format_version": FORMAT_VERSION,
        "cameras": [
            {
                "id": c.id,
                "K": c.K.tolist(),
                "world_to_cam": c.world_to_cam.tolist(),
                "width": c.width,
                "height": c.height,
            }
            for c in checked
        ],
    }
    _write_json(path, obj)


def read_calibration(path: str | Path) -> list[Camera]:
    """Read a calibration.json (the file, or the subject folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "calibration.json"
    obj = _read_json(path)
    version = obj.get("format_version")
    if version != FORMAT_VERSION:
        raise DatasetFormatError(
            f"{path}: format_version must be {FORMAT_VERSION}, got {version!r}; {_REGEN_HINT}"
        )
    cams = obj.get("cameras")
    if not isinstance(cams, list) or not cams:
        raise DatasetFormatError(f"{path}: 'cameras' must be a non-empty list; {_REGEN_HINT}")
    out = []
    for i, c in enumerate(cams):
        keys = ("id", "K", "world_to_cam", "width", "height")
        missing = [k for k in keys if k not in c] if isinstance(c, dict) else list(keys)
        if missing:
            raise DatasetFormatError(
                f"{path}: camera {i} must have id, K, world_to_cam, width, height; "
                f"missing {missing}; {_REGEN_HINT}"
            )
        out.append(_validate_camera(Camera(c["id"], c["K"], c["world_to_cam"],
                                           c["width"], c["height"]), path))  # fmt: skip
    ids = [c.id for c in out]
    if len(set(ids)) != len(ids):
        raise DatasetFormatError(f"{path}: camera ids must be unique, got {ids}")
    return out


# --------------------------------------------------------------------------------------------
# template.npz


def _validate_template(t: Template, path: Path) -> Template:
    v = np.asarray(t.vertices)
    f = np.asarray(t.faces)
    uv = np.asarray(t.uvs)
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] == 0 or not np.issubdtype(v.dtype, np.floating):
        raise DatasetFormatError(
            f"{path}: vertices must be a float [P, 3] array, got {v.dtype} {v.shape}; {_REGEN_HINT}"
        )
    P = v.shape[0]
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
        raise DatasetFormatError(
            f"{path}: faces must be an integer [F, 3] array, got {f.dtype} {f.shape}; {_REGEN_HINT}"
        )
    if f.size and (f.min() < 0 or f.max() >= P):
        raise DatasetFormatError(
            f"{path}: faces index vertices 0..{P - 1}, got indices {f.min()}..{f.max()}"
        )
    if uv.shape != (P, 2) or not np.issubdtype(uv.dtype, np.floating):
        raise DatasetFormatError(
            f"{path}: uvs must be a float [P, 2] = [{P}, 2] array, got {uv.dtype} {uv.shape}"
        )
    if not np.all(np.isfinite(v)):
        raise DatasetFormatError(f"{path}: vertices contain NaN or infinity; {_REGEN_HINT}")
    regions = {}
    for name, mask in t.regions.items():
        m = np.asarray(mask)
        if m.shape != (P,) or m.dtype != np.bool_:
            raise DatasetFormatError(
                f"{path}: region {name!r} must be a bool [P] = [{P}] mask, got {m.dtype} {m.shape}"
            )
        regions[str(name)] = m
    return Template(
        vertices=v.astype(np.float32),
        faces=f.astype(np.int32),
        uvs=uv.astype(np.float32),
        regions=regions,
    )


def write_template(subject_dir: str | Path, template: Template) -> None:
    """Write `<subject_dir>/template.npz`: vertices, faces, uvs and one region_<name> per region."""
    path = Path(subject_dir) / "template.npz"
    t = _validate_template(template, path)
    arrays = {"vertices": t.vertices, "faces": t.faces, "uvs": t.uvs}
    arrays.update({f"region_{k}": v for k, v in t.regions.items()})

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    _atomic_write(path, write)


def read_template(path: str | Path) -> Template:
    """Read a template.npz (the file, or the subject folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "template.npz"
    if not path.is_file():
        raise DatasetFormatError(f"{path} is missing; {_CHECK_HINT}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as err:  # zipfile/pickle/OS errors: all mean "not a readable npz"
        raise DatasetFormatError(f"{path} is not a readable .npz ({err}); {_REGEN_HINT}") from err
    missing = [k for k in ("vertices", "faces", "uvs") if k not in arrays]
    if missing:
        raise DatasetFormatError(
            f"{path}: missing arrays {missing} (has {sorted(arrays)}); {_REGEN_HINT}"
        )
    regions = {k[len("region_") :]: v for k, v in arrays.items() if k.startswith("region_")}
    return _validate_template(
        Template(arrays["vertices"], arrays["faces"], arrays["uvs"], regions), path
    )


# --------------------------------------------------------------------------------------------
# meta.json


def _validate_meta(meta: SequenceMeta, path: Path) -> SequenceMeta:
    if meta.emotion not in EMOTIONS:
        raise DatasetFormatError(
            f"{path}: unknown emotion {meta.emotion!r}; expected one of {', '.join(EMOTIONS)}"
        )
    try:
        intensity = float(meta.intensity)
        fps = float(meta.fps)
    except (TypeError, ValueError) as err:
        raise DatasetFormatError(f"{path}: intensity and fps must be numbers ({err})") from err
    if not 0.0 <= intensity <= 1.0:
        raise DatasetFormatError(f"{path}: intensity must lie in [0, 1], got {meta.intensity}")
    if not (math.isfinite(fps) and fps > 0):
        raise DatasetFormatError(f"{path}: fps must be positive, got {meta.fps}")
    n = meta.num_frames
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DatasetFormatError(f"{path}: num_frames must be an integer >= 1, got {n!r}")
    if not isinstance(meta.sentence, str):
        raise DatasetFormatError(f"{path}: sentence must be a string, got {meta.sentence!r}")
    if meta.split is not None and meta.split not in SPLITS:
        raise DatasetFormatError(
            f"{path}: split must be one of {', '.join(SPLITS)} or null, got {meta.split!r}"
        )
    if meta.sentence_id is not None and not isinstance(meta.sentence_id, str):
        raise DatasetFormatError(f"{path}: sentence_id must be a string or null")
    clash = sorted(set(meta.extra) & set(META_KEYS))
    if clash:
        raise DatasetFormatError(f"{path}: extra keys {clash} shadow meta.json's own fields")
    return SequenceMeta(
        emotion=meta.emotion,
        intensity=intensity,
        sentence=meta.sentence,
        fps=fps,
        num_frames=int(n),
        sentence_id=meta.sentence_id,
        split=meta.split,
        extra=dict(meta.extra),
    )


def write_meta(sequence_dir: str | Path, meta: SequenceMeta) -> None:
    """Write `<sequence_dir>/meta.json` (the named fields first, then `meta.extra`)."""
    path = Path(sequence_dir) / "meta.json"
    m = _validate_meta(meta, path)
    obj = {
        "emotion": m.emotion,
        "intensity": m.intensity,
        "sentence": m.sentence,
        "fps": m.fps,
        "num_frames": m.num_frames,
        "sentence_id": m.sentence_id,
        "split": m.split,
        **m.extra,
    }
    _write_json(path, obj)


def read_meta(path: str | Path) -> SequenceMeta:
    """Read a meta.json (the file, or the sequence folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "meta.json"
    obj = _read_json(path)
    missing = [k for k in ("emotion", "intensity", "sentence", "fps", "num_frames") if k not in obj]
    if missing:
        raise DatasetFormatError(f"{path}: missing keys {missing}; {_REGEN_HINT}")
    extra = {k: v for k, v in obj.items() if k not in META_KEYS}
    meta = SequenceMeta(
        emotion=obj["emotion"],
        intensity=obj["intensity"],
        sentence=obj["sentence"],
        fps=obj["fps"],
        num_frames=obj["num_frames"],
        sentence_id=obj.get("sentence_id"),
        split=obj.get("split"),
        extra=extra,
    )
    return _validate_meta(meta, path)


# --------------------------------------------------------------------------------------------
# meshes.npy and audio.wav


def write_meshes(sequence_dir: str | Path, meshes: np.ndarray) -> None:  # meshes: [T, P, 3]
    """Write `<sequence_dir>/meshes.npy` as float32."""
    path = Path(sequence_dir) / "meshes.npy"
    m = np.asarray(meshes)
    if m.ndim != 3 or m.shape[2] != 3 or not np.issubdtype(m.dtype, np.floating):
        raise DatasetFormatError(f"{path}: meshes must be a float [T, P, 3] array, got "
                                 f"{m.dtype} {m.shape}")  # fmt: skip
    m = np.ascontiguousarray(m, dtype=np.float32)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, m)

    _atomic_write(path, write)


def mesh_shape(path: str | Path) -> tuple[tuple[int, ...], np.dtype]:
    """The (shape, dtype) of a .npy file from its header, without reading the data."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path} is missing; {_CHECK_HINT}")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as err:
        raise DatasetFormatError(f"{path} is not a readable .npy ({err}); {_REGEN_HINT}") from err
    return tuple(arr.shape), arr.dtype


def read_meshes(
    path: str | Path, num_frames: int | None = None, num_points: int | None = None
) -> np.ndarray:  # [T, P, 3] float32
    """Read a meshes.npy, checking [T, P, 3] float and, when given, T and P."""
    path = Path(path)
    shape, dtype = mesh_shape(path)
    if len(shape) != 3 or shape[2] != 3 or not np.issubdtype(dtype, np.floating):
        raise DatasetFormatError(
            f"{path}: expected a float [T, P, 3] array, got {dtype} {shape}; {_REGEN_HINT}"
        )
    if num_points is not None and shape[1] != num_points:
        raise DatasetFormatError(
            f"{path} has {shape[1]} vertices per frame but the subject's template.npz has "
            f"{num_points}; {_REGEN_HINT}"
        )
    if num_frames is not None and shape[0] != num_frames:
        raise DatasetFormatError(
            f"frame-count mismatch: {path} has {shape[0]} frames but meta.json says "
            f"num_frames={num_frames}; {_REGEN_HINT}"
        )
    return np.load(path, allow_pickle=False).astype(np.float32, copy=False)


def write_audio(
    sequence_dir: str | Path,
    audio: np.ndarray,  # [S] float
    sample_rate: int = SAMPLE_RATE,
    subtype: str = "PCM_16",
) -> None:
    """Write `<sequence_dir>/audio.wav`, 16 kHz mono (resampled with soxr if needed).

    Args:
        subtype: "PCM_16" (default; values are clipped to [-1, 1]) or "FLOAT".
    """
    import soundfile as sf

    path = Path(sequence_dir) / "audio.wav"
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim != 1:
        raise DatasetFormatError(f"{path}: audio must be mono [S], got shape {a.shape}; "
                                 f"mix the channels down first")  # fmt: skip
    if subtype not in ("PCM_16", "FLOAT"):
        raise DatasetFormatError(f"{path}: subtype must be 'PCM_16' or 'FLOAT', got {subtype!r}")
    if not np.all(np.isfinite(a)):
        raise DatasetFormatError(f"{path}: audio contains NaN or infinity")
    if sample_rate != SAMPLE_RATE:
        import soxr

        a = soxr.resample(a, sample_rate, SAMPLE_RATE).astype(np.float32)
    if subtype == "PCM_16":
        a = np.clip(a, -1.0, 1.0)
    _atomic_write(path, lambda tmp: sf.write(tmp, a, SAMPLE_RATE, subtype=subtype, format="WAV"))


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:  # ([S] float32, sample_rate)
    """Read an audio.wav: float32 mono at 16 kHz; anything else is a DatasetFormatError."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path} is missing; {_CHECK_HINT}")
    try:
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as err:
        raise DatasetFormatError(
            f"{path} is not a readable WAV file ({err}); {_REGEN_HINT}"
        ) from err
    if audio.shape[1] != 1:
        raise DatasetFormatError(f"{path}: expected mono audio, got {audio.shape[1]} channels; "
                                 f"{_REGEN_HINT}")  # fmt: skip
    if sr != SAMPLE_RATE:
        raise DatasetFormatError(f"{path}: expected {SAMPLE_RATE} Hz audio, got {sr} Hz; "
                                 f"{_REGEN_HINT}")  # fmt: skip
    return audio[:, 0], int(sr)


def audio_info(path: str | Path) -> tuple[float, int, int]:
    """(duration in seconds, sample rate, channels) of a WAV from its header."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path} is missing; {_CHECK_HINT}")
    try:
        info = sf.info(path)
    except Exception as err:
        raise DatasetFormatError(
            f"{path} is not a readable WAV file ({err}); {_REGEN_HINT}"
        ) from err
    return info.frames / info.samplerate, int(info.samplerate), int(info.channels)


def write_sequence(
    subject_dir: str | Path,
    name: str,
    meta: SequenceMeta,
    meshes: np.ndarray,  # [T, P, 3]
    audio: np.ndarray,  # [S] float32, 16 kHz mono
    sample_rate: int = 16000,
    audio_subtype: str = "PCM_16",
) -> Path:
    """Write meta.json, meshes.npy and audio.wav; returns the sequence folder. Images are
    written with `write_frame_images`."""
    if not name or "/" in name or name.startswith("."):
        raise DatasetFormatError(f"sequence name must be a non-empty folder name, got {name!r}")
    seq_dir = Path(subject_dir) / "sequences" / name
    m = np.asarray(meshes)
    if m.ndim == 3 and m.shape[0] != meta.num_frames:
        raise DatasetFormatError(
            f"{seq_dir}: meshes have {m.shape[0]} frames but meta.num_frames is {meta.num_frames}"
        )
    write_meshes(seq_dir, m)
    write_audio(seq_dir, audio, sample_rate, subtype=audio_subtype)
    write_meta(seq_dir, meta)  # last: a sequence with a meta.json is complete
    return seq_dir


# --------------------------------------------------------------------------------------------
# images and masks


def _to_uint8(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    if x.dtype == np.bool_:
        return x.astype(np.uint8) * 255
    if np.issubdtype(x.dtype, np.floating):
        return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise DatasetFormatError(f"images must be uint8, bool or float in [0, 1], got {x.dtype}")


def write_frame_images(
    sequence_dir: str | Path,
    camera_id: str,
    frame: int,
    image: np.ndarray,  # [H, W, 3] uint8 or float in [0, 1]
    mask: np.ndarray | None = None,  # [H, W] uint8/bool/float
    image_format: str = "png",
    jpeg_quality: int = 95,
) -> None:
    """Write images/<camera>/<frame:05d>.png (or .jpg) and, if given, masks/<camera>/<frame>.png."""
    from PIL import Image

    seq_dir = Path(sequence_dir)
    if image_format not in ("png", "jpg"):
        raise DatasetFormatError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise DatasetFormatError(f"{seq_dir}: image must be [H, W, 3], got {img.shape}")
    img = _to_uint8(img)
    stem = f"{int(frame):05d}"
    img_path = seq_dir / "images" / camera_id / f"{stem}.{image_format}"
    pil = Image.fromarray(np.ascontiguousarray(img))
    if image_format == "png":
        _atomic_write(img_path, lambda tmp: pil.save(tmp, format="PNG"))
    else:
        _atomic_write(img_path, lambda tmp: pil.save(tmp, format="JPEG", quality=jpeg_quality))
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != img.shape[:2]:
            raise DatasetFormatError(
                f"{seq_dir}: mask must be [H, W] = {list(img.shape[:2])}, got {list(m.shape)}"
            )
        mpil = Image.fromarray(np.ascontiguousarray(_to_uint8(m)))
        mask_path = seq_dir / "masks" / camera_id / f"{stem}.png"
        _atomic_write(mask_path, lambda tmp: mpil.save(tmp, format="PNG"))


def _open_image(path: Path, verify: bool = False):
    from PIL import Image

    if not path.is_file():
        raise DatasetFormatError(f"image {path} is missing; {_CHECK_HINT}")
    try:
        if verify:  # chunk CRCs and structure; the image object is unusable afterwards
            with Image.open(path) as im:
                im.verify()
        im = Image.open(path)
        im.load()  # full decode: a truncated file fails here
    except Exception as err:
        raise DatasetFormatError(
            f"image {path} is corrupt or unreadable ({type(err).__name__}: {err}); {_REGEN_HINT}"
        ) from err
    return im


def read_image(path: str | Path) -> np.ndarray:  # [H, W, 3] float32 in [0, 1]
    """Decode an RGB image file to float32 in [0, 1]; DatasetFormatError names a bad file."""
    im = _open_image(Path(path))
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def read_mask(path: str | Path) -> np.ndarray:  # [H, W] float32 in [0, 1]
    """Decode a mask file to float32 in [0, 1] (1 = foreground)."""
    im = _open_image(Path(path))
    return np.asarray(im.convert("L"), dtype=np.float32) / 255.0


# --------------------------------------------------------------------------------------------
# reading a subject / dataset


def _has_images(seq_dir: Path) -> bool:
    images = seq_dir / "images"
    return images.is_dir() and any(p.is_dir() for p in images.iterdir())


def read_sequence(path: str | Path, num_points: int | None = None) -> SequenceInfo:
    """Open one sequence folder (reads meta.json only)."""
    path = Path(path)
    meta = read_meta(path / "meta.json")
    return SequenceInfo(
        name=path.name, path=path, meta=meta, has_images=_has_images(path), num_points=num_points
    )


def _sequence_dirs(subject_dir: Path) -> list[Path]:
    seq_root = subject_dir / "sequences"
    if not seq_root.is_dir():
        return []
    return sorted(p for p in seq_root.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_subject(path: str | Path) -> SubjectInfo:
    """Open a subject folder: calibration, template and every sequence's meta.json.

    Raises:
        DatasetFormatError: naming the first malformed file.
    """
    path = Path(path)
    if not path.is_dir():
        raise DatasetFormatError(f"subject folder {path} does not exist")
    cameras = read_calibration(path / "calibration.json")
    template = read_template(path / "template.npz")
    P = template.vertices.shape[0]
    seq_dirs = _sequence_dirs(path)
    if not seq_dirs:
        raise DatasetFormatError(f"{path / 'sequences'} holds no sequence folders; {_CHECK_HINT}")
    sequences = [read_sequence(d, num_points=P) for d in seq_dirs]
    return SubjectInfo(
        name=path.name, path=path, cameras=cameras, template=template, sequences=sequences
    )


def subject_dirs(root: str | Path) -> list[Path]:
    """Subject folders under `root` (folders holding calibration.json), sorted; `root` itself
    when it is a subject folder."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"dataset folder {root} does not exist")
    if (root / "calibration.json").is_file():
        return [root]
    return sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / "calibration.json").is_file()
    )


def read_dataset(root: str | Path) -> list[SubjectInfo]:
    """All subjects under `root` (sorted by name); DatasetFormatError if none or malformed."""
    dirs = subject_dirs(root)
    if not dirs:
        raise DatasetFormatError(
            f"{root} holds no subject folders (folders with a calibration.json); generate one "
            f"with `emotalk3d data synth --out {root}`"
        )
    return [read_subject(d) for d in dirs]


# --------------------------------------------------------------------------------------------
# deep check


def _list_missing(what: str, missing: list[str], total: int, limit: int = 3) -> str:
    head = ", ".join(missing[:limit])
    more = f" and {len(missing) - limit} more" if len(missing) > limit else ""
    return f"{len(missing)} of {total} {what} missing: {head}{more}"


def _check_frames(
    seq_dir: Path,
    cameras: list[Camera],
    num_frames: int,
    kind: str,
    decode: bool,
    rel: Callable[[Path], str],
) -> list[str]:
    """Problems with images/ (kind="images") or masks/ (kind="masks") of one sequence."""
    problems: list[str] = []
    missing: list[str] = []
    bad_size: list[str] = []
    total = 0
    for cam in cameras:
        folder = seq_dir / kind / cam.id
        if kind == "masks" and not folder.is_dir():
            continue  # masks are optional per camera
        for t in range(num_frames):
            total += 1
            path = _frame_file(folder, t)
            if not path.is_file():
                missing.append(rel(path))
                continue
            if not decode:
                continue
            try:
                im = _open_image(path, verify=path.suffix == ".png")
            except DatasetFormatError:
                problems.append(f"{rel(path)}: corrupt or unreadable image (it does not decode)")
                continue
            if im.size != (cam.width, cam.height):
                bad_size.append(f"{rel(path)} is {im.size[0]}x{im.size[1]}")
    if missing:
        problems.append(f"{rel(seq_dir)}: " + _list_missing(kind, missing, total))
    if bad_size:
        cam_sizes = ", ".join(f"{c.id}: {c.width}x{c.height}" for c in cameras[:3])
        problems.append(
            f"{rel(seq_dir)}: {len(bad_size)} {kind} differ from the calibrated size "
            f"({cam_sizes}...): {', '.join(bad_size[:3])}"
        )
    return problems


def check_dataset(root: str | Path, decode_images: bool = True) -> CheckReport:
    """Validate every file of a dataset and summarise it.

    Checks, per subject: calibration.json and template.npz parse (with the required regions);
    per sequence: meta.json (known emotion, intensity in [0, 1], split in SPLITS), meshes.npy
    is [T, P, 3] with P the template's vertex count and T == num_frames, the audio is 16 kHz
    mono with ceil(duration * fps) within one frame of num_frames, and, for sequences with
    images, every (camera, frame) image exists, decodes and has the calibrated size (masks
    likewise where a camera has a masks folder).

    Args:
        root: the dataset folder (or a single subject folder).
        decode_images: fully decode every image (slow on large datasets; False only checks
            that the files exist).

    Returns:
        CheckReport with one message per problem (each names its file) and a summary dict:
        subjects, subject_names, sequences, sequences_per_split, sequences_with_images,
        frames, image_frames, cameras, image_resolution, emotions, audio_seconds.
    """
    root = Path(root)
    problems: list[str] = []

    def rel(p: Path) -> str:
        try:
            return str(p.relative_to(root)) or "."
        except ValueError:
            return str(p)

    summary: dict = {
        "subjects": 0,
        "subject_names": [],
        "sequences": 0,
        "sequences_per_split": {},
        "sequences_with_images": 0,
        "frames": 0,
        "image_frames": 0,
        "cameras": 0,
        "image_resolution": None,
        "emotions": {},
        "audio_seconds": 0.0,
    }
    try:
        dirs = subject_dirs(root)
    except DatasetFormatError as err:
        return CheckReport([str(err)], summary)
    if not dirs:
        return CheckReport([f"{root} holds no subject folders (folders with a calibration.json)"],
                           summary)  # fmt: skip
    splits: Counter = Counter()
    emotions: Counter = Counter()
    cam_counts: set[int] = set()
    resolutions: set[tuple[int, int]] = set()
    for sdir in dirs:
        summary["subjects"] += 1
        summary["subject_names"].append(sdir.name)
        cameras: list[Camera] = []
        P: int | None = None
        try:
            cameras = read_calibration(sdir / "calibration.json")
            cam_counts.add(len(cameras))
            resolutions.update((c.width, c.height) for c in cameras)
        except DatasetFormatError as err:
            problems.append(str(err))
        try:
            template = read_template(sdir / "template.npz")
            P = template.vertices.shape[0]
            missing_regions = [r for r in REQUIRED_REGIONS if r not in template.regions]
            if missing_regions:
                problems.append(
                    f"{rel(sdir / 'template.npz')}: missing region masks {missing_regions} "
                    f"(region_<name> arrays); {_REGEN_HINT}"
                )
        except DatasetFormatError as err:
            problems.append(str(err))
        seq_dirs = _sequence_dirs(sdir)
        if not seq_dirs:
            problems.append(f"{rel(sdir / 'sequences')}: no sequence folders")
        for qdir in seq_dirs:
            summary["sequences"] += 1
            try:
                meta = read_meta(qdir / "meta.json")
            except DatasetFormatError as err:
                problems.append(str(err))
                continue
            splits[meta.split or "none"] += 1
            emotions[meta.emotion] += 1
            summary["frames"] += meta.num_frames
            # meshes
            mpath = qdir / "meshes.npy"
            try:
                shape, dtype = mesh_shape(mpath)
                if len(shape) != 3 or shape[2] != 3 or not np.issubdtype(dtype, np.floating):
                    problems.append(
                        f"{rel(mpath)}: expected a float [T, P, 3] array, got {dtype} {shape}"
                    )
                else:
                    if P is not None and shape[1] != P:
                        problems.append(
                            f"{rel(mpath)} has {shape[1]} vertices per frame but "
                            f"{rel(sdir / 'template.npz')} has {P}"
                        )
                    if shape[0] != meta.num_frames:
                        problems.append(
                            f"frame-count mismatch: {rel(mpath)} has {shape[0]} frames but "
                            f"{rel(qdir / 'meta.json')} says num_frames={meta.num_frames}"
                        )
            except DatasetFormatError as err:
                problems.append(str(err))
            # audio
            apath = qdir / "audio.wav"
            try:
                duration, sr, channels = audio_info(apath)
                summary["audio_seconds"] += duration
                if sr != SAMPLE_RATE or channels != 1:
                    problems.append(
                        f"{rel(apath)}: expected {SAMPLE_RATE} Hz mono, got {sr} Hz with "
                        f"{channels} channels"
                    )
                expected = math.ceil(duration * meta.fps - 1e-6)
                if abs(expected - meta.num_frames) > 1:
                    problems.append(
                        f"frame-count mismatch: {rel(apath)} lasts {duration:.3f} s, i.e. "
                        f"{expected} frames at {meta.fps:g} fps, but "
                        f"{rel(qdir / 'meta.json')} says num_frames={meta.num_frames}"
                    )
            except DatasetFormatError as err:
                problems.append(str(err))
            # images and masks
            if _has_images(qdir):
                summary["sequences_with_images"] += 1
                summary["image_frames"] += meta.num_frames
                if cameras:
                    problems += _check_frames(
                        qdir, cameras, meta.num_frames, "images", decode_images, rel
                    )
                    if (qdir / "masks").is_dir():
                        problems += _check_frames(
                            qdir, cameras, meta.num_frames, "masks", decode_images, rel
                        )
    summary["sequences_per_split"] = dict(sorted(splits.items()))
    summary["emotions"] = {e: emotions[e] for e in EMOTIONS if emotions[e]}
    summary["cameras"] = (
        cam_counts.pop() if len(cam_counts) == 1 else sorted(cam_counts) if cam_counts else 0
    )
    summary["image_resolution"] = (
        "x".join(map(str, next(iter(resolutions))))
        if len(resolutions) == 1
        else sorted(f"{w}x{h}" for w, h in resolutions)
    )
    summary["audio_seconds"] = round(summary["audio_seconds"], 3)
    return CheckReport(problems, summary)


def format_summary(summary: dict) -> str:
    """A human-readable multi-line rendering of `CheckReport.summary`."""
    splits = ", ".join(f"{k} {v}" for k, v in summary.get("sequences_per_split", {}).items())
    emotions = ", ".join(f"{k} {v}" for k, v in summary.get("emotions", {}).items())
    lines = [
        f"subjects:   {summary.get('subjects', 0)} ({', '.join(summary.get('subject_names', []))})",
        f"sequences:  {summary.get('sequences', 0)} ({splits or 'no split'}); "
        f"{summary.get('sequences_with_images', 0)} with images",
        f"frames:     {summary.get('frames', 0)} ({summary.get('image_frames', 0)} with images)",
        f"cameras:    {summary.get('cameras', 0)} at {summary.get('image_resolution')}",
        f"emotions:   {emotions or 'none'}",
        f"audio:      {summary.get('audio_seconds', 0.0):.1f} s",
    ]
    return "\n".join(lines)
