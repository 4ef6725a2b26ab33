"""The dataset format, version 1 (DESIGN.md section 4): reader, writer and validator.

    <root>/<subject>/
      calibration.json        # {"format_version": 1, "cameras": [{id, K, world_to_cam, width, height}]}
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
the JSON files and the template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
REQUIRED_REGIONS = ("face", "lips", "eyes", "mouth_interior")


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
    """One sequence of one subject; heavy data is loaded on demand."""

    name: str
    path: Path
    meta: SequenceMeta
    has_images: bool

    def load_meshes(self) -> np.ndarray:  # [T, P, 3] float32
        raise NotImplementedError

    def load_audio(self) -> tuple[np.ndarray, int]:  # ([S] float32, sample_rate)
        raise NotImplementedError

    def image_path(self, camera_id: str, frame: int) -> Path:
        raise NotImplementedError

    def mask_path(self, camera_id: str, frame: int) -> Path | None:
        raise NotImplementedError

    def load_image(self, camera_id: str, frame: int) -> np.ndarray:  # [H, W, 3] float32 in [0, 1]
        raise NotImplementedError

    def load_mask(self, camera_id: str, frame: int) -> np.ndarray | None:  # [H, W] float32
        raise NotImplementedError


@dataclass
class SubjectInfo:
    """One subject: calibration, template and sequences (sorted by name)."""

    name: str
    path: Path
    cameras: list[Camera]
    template: Template
    sequences: list[SequenceInfo]

    def camera(self, camera_id: str) -> Camera:
        raise NotImplementedError

    def split(self, split: str) -> list[SequenceInfo]:
        raise NotImplementedError


def read_subject(path: str | Path) -> SubjectInfo:
    raise NotImplementedError


def read_dataset(root: str | Path) -> list[SubjectInfo]:
    """All subjects under `root` (sorted by name); DatasetFormatError if none or malformed."""
    raise NotImplementedError


def write_calibration(subject_dir: str | Path, cameras: list[Camera]) -> None:
    raise NotImplementedError


def write_template(subject_dir: str | Path, template: Template) -> None:
    raise NotImplementedError


def write_sequence(
    subject_dir: str | Path,
    name: str,
    meta: SequenceMeta,
    meshes: np.ndarray,  # [T, P, 3]
    audio: np.ndarray,  # [S] float32, 16 kHz mono
    sample_rate: int = 16000,
) -> Path:
    """Write meta.json, meshes.npy and audio.wav; returns the sequence folder. Images are
    written with `write_frame_images`."""
    raise NotImplementedError


def write_frame_images(
    sequence_dir: str | Path,
    camera_id: str,
    frame: int,
    image: np.ndarray,  # [H, W, 3] uint8 or float in [0, 1]
    mask: np.ndarray | None = None,  # [H, W] uint8/bool/float
) -> None:
    raise NotImplementedError
