"""Data modules of the speech stages: S2GNet (audio + emotion -> meshes) and the emotion
extractor (audio -> emotion label and intensity). DESIGN.md sections 2 and 4.

Both read the dataset format (`emotalk3d.data.format`), split by each sequence's meta.split
(train/val/test, by sentence), decode every clip's audio (and meshes) once into memory, and
batch clips of different lengths with zero padding plus lengths and masks. When `data_dir`
does not exist they generate the built-in synthetic dataset there first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import numpy as np
import soxr
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from emotalk3d.constants import EMOTIONS, emotion_vector
from emotalk3d.data.format import SPLITS, DatasetFormatError, SubjectInfo, read_dataset
from emotalk3d.data.synth.generate import ensure_dataset

SAMPLE_RATE = 16000


@dataclass
class SpeechClip:
    """One decoded sequence (kept in memory)."""

    name: str  # "<subject>/<sequence>"
    subject: int  # index into the data module's subject_names
    audio: Tensor  # [S] float32, 16 kHz
    emotion: Tensor  # [E]
    label: int  # index into EMOTIONS
    intensity: float  # in [0, 1]; 0 for neutral
    meshes: Tensor | None = None  # [T, P, 3] float32 mm
    index: int = 0  # position in its split's clip list
    start_frame: int = 0  # first motion frame of a training window within the clip


class SpeechClips(Dataset):
    """Clips, optionally cut to random windows of at most `max_frames` motion frames, and
    optionally speed-perturbed.

    A window starts on a motion frame; its audio is the matching samples, so a window of n
    frames has n * sample_rate / fps samples and `num_motion_frames` of it is n.

    With `speed_perturb` a > 0 each item is the clip played at a random rate r in
    [1 - a, 1 + a] (`speed_perturbed`): audio resampled, meshes interpolated to match.
    """

    def __init__(
        self,
        clips: list[SpeechClip],
        fps: int,
        max_frames: int | None = None,
        speed_perturb: float = 0.0,
    ) -> None:
        if not 0.0 <= speed_perturb < 0.5:
            raise ValueError(f"speed_perturb must lie in [0, 0.5), got {speed_perturb}")
        self.clips = clips
        self.fps = fps
        self.max_frames = max_frames
        self.speed_perturb = speed_perturb

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> SpeechClip:
        clip = self.clips[index]
        if self.speed_perturb > 0:
            # torch's RNG: seeded by seed_everything and distinct per DataLoader worker
            rate = 1.0 + self.speed_perturb * (2.0 * float(torch.rand(())) - 1.0)
            return speed_perturbed(clip, rate, self.fps, self.max_frames, float(torch.rand(())))
        if self.max_frames is None:
            return clip
        hop = SAMPLE_RATE // self.fps
        num_frames = clip.meshes.shape[0] if clip.meshes is not None else -(-len(clip.audio) // hop)
        if num_frames <= self.max_frames:
            return clip
        # torch's RNG: seeded by seed_everything and distinct per DataLoader worker
        f0 = int(torch.randint(0, num_frames - self.max_frames + 1, ()))
        f1 = f0 + self.max_frames
        return SpeechClip(
            name=clip.name,
            subject=clip.subject,
            audio=clip.audio[f0 * hop : f1 * hop],
            emotion=clip.emotion,
            label=clip.label,
            intensity=clip.intensity,
            meshes=None if clip.meshes is None else clip.meshes[f0:f1],
            index=clip.index,
            start_frame=f0,
        )


def speed_perturbed(
    clip: SpeechClip,
    rate: float,
    fps: int,
    max_frames: int | None = None,
    position: float = 0.0,
) -> SpeechClip:
    """A window of `clip` played `rate` times as fast (rate > 1: faster and higher).

    Speed perturbation as in speech recognition (Ko et al., Interspeech 2015), with the face
    kept in step: output frame k shows the clip at its frame t0 + k * rate (meshes linearly
    interpolated) and the audio is the matching span resampled (soxr) to n * sample_rate / fps
    samples, so the window's frame and sample counts follow the usual rule. The window has as
    many frames n as fit in the clip, at most `max_frames`; `position` in [0, 1] places it
    from the clip's start to its end. Its `start_frame` is -1: it is no slice of the clip.
    """
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    hop = SAMPLE_RATE // fps
    T = clip.meshes.shape[0] if clip.meshes is not None else -(-len(clip.audio) // hop)
    n = int((T - 1) / rate + 1e-9) + 1  # frames whose source positions lie in [0, T - 1]
    if max_frames is not None:
        n = min(n, max_frames)
    t0 = position * max(0.0, (T - 1) - (n - 1) * rate)  # first source frame (fractional)
    first = int(round(t0 * hop))
    count = min(len(clip.audio) - first, int(round(n * rate * hop)))
    span = clip.audio[first : first + count].numpy()
    audio = soxr.resample(span, SAMPLE_RATE * rate, SAMPLE_RATE)  # HQ by default
    audio = torch.from_numpy(np.ascontiguousarray(audio[: n * hop], dtype=np.float32))
    audio = torch.nn.functional.pad(audio, (0, n * hop - len(audio)))  # soxr may give 1 short
    meshes = None
    if clip.meshes is not None:
        pos = t0 + rate * torch.arange(n, dtype=torch.float64)  # [n] source frames
        lo = pos.floor().long().clamp(max=T - 1)
        hi = (lo + 1).clamp(max=T - 1)
        w = (pos - lo).to(torch.float32)[:, None, None]  # [n, 1, 1]
        meshes = torch.lerp(clip.meshes[lo], clip.meshes[hi], w)  # [n, P, 3]
    return SpeechClip(
        name=clip.name,
        subject=clip.subject,
        audio=audio,
        emotion=clip.emotion,
        label=clip.label,
        intensity=clip.intensity,
        meshes=meshes,
        index=clip.index,
        start_frame=-1,
    )


def collate_clips(
    clips: list[SpeechClip],
    templates: Tensor | None = None,  # [num_subjects, P, 3]
    regions: dict[str, Tensor] | None = None,  # name -> [P] bool
) -> dict[str, Tensor]:
    """Batch clips with zero padding on the right.

    Returns a dict with: audio [B, S], audio_lengths [B], emotion [B, E], subject [B],
    label [B], intensity [B], clip_index [B] (position in the split) and start_frame [B]
    (first motion frame of each window in its clip: 0 for whole clips); and, for clips with
    meshes: meshes [B, T, P, 3] (padding repeats each clip's last frame), num_frames [B],
    frame_mask [B, T] bool, template [B, P, 3], and one [B, P] bool mask per region (e.g.
    lips, eyes).
    """
    B = len(clips)
    lengths = torch.tensor([len(c.audio) for c in clips])
    audio = torch.zeros(B, int(lengths.max()))
    for i, c in enumerate(clips):
        audio[i, : len(c.audio)] = c.audio
    subject = torch.tensor([c.subject for c in clips])
    batch = {
        "audio": audio,
        "audio_lengths": lengths,
        "emotion": torch.stack([c.emotion for c in clips]),
        "subject": subject,
        "label": torch.tensor([c.label for c in clips]),
        "intensity": torch.tensor([c.intensity for c in clips], dtype=torch.float32),
        "clip_index": torch.tensor([c.index for c in clips]),
        "start_frame": torch.tensor([c.start_frame for c in clips]),
    }
    if clips[0].meshes is not None:
        num_frames = torch.tensor([c.meshes.shape[0] for c in clips])
        T = int(num_frames.max())
        meshes = torch.stack(
            [torch.cat([c.meshes, c.meshes[-1:].expand(T - len(c.meshes), -1, -1)]) for c in clips]
        )
        batch["meshes"] = meshes
        batch["num_frames"] = num_frames
        batch["frame_mask"] = torch.arange(T)[None] < num_frames[:, None]
        if templates is not None:
            batch["template"] = templates[subject]
        for name, mask in (regions or {}).items():
            batch[name] = mask[None].expand(B, -1)
    return batch


class _SpeechDataModule(pl.LightningDataModule):
    """Shared reading, splitting, caching and batching of the speech data modules."""

    with_meshes = True

    def __init__(
        self,
        data_dir: str = "data/builtin-small",
        subjects: list[str] | None = None,
        fps: int = 25,
        batch_size: int = 8,
        num_workers: int = 0,
        max_seconds: float | None = 4.0,
        generate_size: Literal["tiny", "small", "full"] = "small",
        generate_subjects: int | None = None,
        seed: int = 0,
        speed_perturb: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= speed_perturb < 0.5:
            raise ValueError(f"speed_perturb must lie in [0, 0.5), got {speed_perturb}")
        if fps < 1 or SAMPLE_RATE % fps:
            raise ValueError(f"fps must divide {SAMPLE_RATE} (e.g. 25), got {fps}")
        if max_seconds is not None and max_seconds * fps < 1:
            raise ValueError(f"max_seconds must cover at least one frame, got {max_seconds}")
        self.data_dir = data_dir
        self.subjects = list(subjects) if subjects is not None else None
        self.fps = fps
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.max_seconds = max_seconds
        self.generate_size = generate_size
        self.generate_subjects = generate_subjects
        self.seed = seed
        self.speed_perturb = speed_perturb
        self._info: list[SubjectInfo] | None = None
        self._clips: dict[str, list[SpeechClip]] = {}

    # ---- dataset index (read lazily: the CLI links its sizes into the model) -------------

    def _subjects_info(self) -> list[SubjectInfo]:
        if self._info is None:
            root = ensure_dataset(
                self.data_dir, self.generate_size, self.generate_subjects, self.seed
            )
            info = read_dataset(root)
            if self.subjects is not None:
                by_name = {s.name: s for s in info}
                missing = [n for n in self.subjects if n not in by_name]
                if missing:
                    raise ValueError(
                        f"subjects {missing} are not in {root}; it holds {sorted(by_name)}"
                    )
                info = [by_name[n] for n in self.subjects]
            self._validate(info, root)
            self._info = info
        return self._info

    def _validate(self, info: list[SubjectInfo], root: Path) -> None:
        first = info[0].template
        for s in info[1:]:
            t = s.template
            if t.vertices.shape != first.vertices.shape or not np.array_equal(t.faces, first.faces):
                raise DatasetFormatError(
                    f"all training subjects must share one mesh topology: {info[0].name} has "
                    f"{len(first.vertices)} points / {len(first.faces)} faces, {s.name} has "
                    f"{len(t.vertices)} / {len(t.faces)}; train on subjects of one rig (pass "
                    f"subjects=[...])"
                )
        for s in info:
            for seq in s.sequences:
                if self.with_meshes and seq.meta.fps != self.fps:
                    raise DatasetFormatError(
                        f"{seq.path}: meshes are at {seq.meta.fps} fps but the data module "
                        f"expects fps={self.fps}; set data.fps to match"
                    )
                if seq.meta.emotion not in EMOTIONS:
                    raise DatasetFormatError(
                        f"{seq.path}: unknown emotion {seq.meta.emotion!r}; expected one of "
                        f"{', '.join(EMOTIONS)}"
                    )
        for split in ("train",):
            if not any(s.split(split) for s in info):
                raise DatasetFormatError(f"{root} has no sequence with meta.split == {split!r}")

    @property
    def subject_names(self) -> list[str]:
        """Names of the subjects, in subject-id order."""
        return [s.name for s in self._subjects_info()]

    @property
    def num_subjects(self) -> int:
        """Number of subjects (one style embedding each)."""
        return len(self._subjects_info())

    @property
    def num_points(self) -> int:
        """P, the shared template's vertex count."""
        return int(self._subjects_info()[0].template.vertices.shape[0])

    @property
    def templates(self) -> Tensor:  # [num_subjects, P, 3]
        """Every subject's neutral template, in subject-id order (mm)."""
        return torch.stack(
            [
                torch.as_tensor(s.template.vertices, dtype=torch.float32)
                for s in self._subjects_info()
            ]
        )

    @property
    def faces(self) -> Tensor:  # [F, 3]
        """The shared mesh triangles."""
        return torch.as_tensor(self._subjects_info()[0].template.faces, dtype=torch.long)

    @property
    def regions(self) -> dict[str, Tensor]:  # name -> [P] bool
        """The shared template's region masks (lips, eyes, face, mouth_interior, ...)."""
        regions = self._subjects_info()[0].template.regions
        return {k: torch.as_tensor(np.asarray(v), dtype=torch.bool) for k, v in regions.items()}

    # ---- clips --------------------------------------------------------------------------

    def clips(self, split: str) -> list[SpeechClip]:
        """The decoded clips of a split (cached in memory after the first call)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        if split not in self._clips:
            out = []
            for index, subject in enumerate(self._subjects_info()):
                for seq in subject.split(split):
                    audio, sr = seq.load_audio()
                    assert sr == SAMPLE_RATE, (seq.path, sr)
                    meta = seq.meta
                    e = emotion_vector(meta.emotion, float(meta.intensity))
                    meshes = None
                    if self.with_meshes:
                        meshes = torch.from_numpy(np.ascontiguousarray(seq.load_meshes()))
                    out.append(
                        SpeechClip(
                            name=f"{subject.name}/{seq.name}",
                            subject=index,
                            audio=torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
                            emotion=e,
                            label=EMOTIONS.index(meta.emotion),
                            intensity=float(e[-1]),
                            meshes=meshes,
                            index=len(out),
                        )
                    )
            self._clips[split] = out
        return self._clips[split]

    def prepare_data(self) -> None:
        """Generate the dataset when `data_dir` does not exist (and check it otherwise)."""
        ensure_dataset(self.data_dir, self.generate_size, self.generate_subjects, self.seed)

    def setup(self, stage: str | None = None) -> None:
        """Read the dataset index and decode the splits the stage needs."""
        self._subjects_info()
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
        for split in needed.get(stage or "fit", ("train", "val", "test")):
            self.clips(split)

    def _collate(self, clips: list[SpeechClip]) -> dict[str, Tensor]:
        if not self.with_meshes:
            return collate_clips(clips)
        regions = {k: v for k, v in self.regions.items() if k in ("lips", "eyes")}
        return collate_clips(clips, self._templates_cache(), regions)

    def _templates_cache(self) -> Tensor:  # [num_subjects, P, 3]
        if not hasattr(self, "_templates"):
            self._templates = self.templates
        return self._templates

    def _loader(self, split: str, train: bool) -> DataLoader:
        clips = self.clips(split)
        if not clips:
            raise DatasetFormatError(f"{self.data_dir} has no {split!r} sequences")
        max_frames = None
        if train and self.max_seconds is not None:
            max_frames = max(1, int(self.max_seconds * self.fps))
        return DataLoader(
            SpeechClips(clips, self.fps, max_frames, self.speed_perturb if train else 0.0),
            batch_size=self.batch_size,
            shuffle=train,
            num_workers=self.num_workers,
            collate_fn=self._collate,
            drop_last=False,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training clips, cut to random windows of at most `max_seconds`."""
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        """Whole validation clips."""
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        """Whole test clips."""
        return self._loader("test", train=False)


class S2GDataModule(_SpeechDataModule):
    """Audio, emotion and per-frame meshes for S2GNet (DESIGN.md section 2, "S2GNet").

    Batches (`collate_clips`): audio [B, S] with audio_lengths [B], meshes [B, T, P, 3] with
    num_frames [B] and frame_mask [B, T], template [B, P, 3], emotion [B, E], subject [B],
    label [B], intensity [B], lips [B, P] and eyes [B, P]. Subject ids index `subject_names`;
    every subject must share one mesh topology.
    """

    with_meshes = True

    def __init__(
        self,
        data_dir: str = "data/builtin-small",
        subjects: list[str] | None = None,
        fps: int = 25,
        batch_size: int = 8,
        num_workers: int = 0,
        max_seconds: float | None = 4.0,
        generate_size: Literal["tiny", "small", "full"] = "small",
        generate_subjects: int | None = None,
        seed: int = 0,
        speed_perturb: float = 0.0,
    ) -> None:
        """Configure the data.

        Args:
            data_dir: Dataset folder in the dataset format. When it does not exist, the
                built-in synthetic dataset is generated there (see `generate_size`).
            subjects: Subject folder names to use (their order gives the subject ids); None
                for all subjects, sorted by name.
            fps: Motion frame rate; every sequence's meta.fps must equal it.
            batch_size: Clips per batch.
            num_workers: DataLoader worker processes (0: load in the main process; clips are
                decoded once and held in memory either way).
            max_seconds: Training clips are cut to random windows of at most this long (whole
                motion frames); None trains on whole clips. Validation and test use whole
                clips.
            generate_size: Size preset of the built-in dataset generated when `data_dir` is
                missing: tiny (tests), small (CPU demo) or full.
            generate_subjects: Subjects to generate (None: the preset's default).
            seed: Seed of the generated dataset and of the random training windows.
            speed_perturb: a > 0 plays each training window at a random rate in
                [1 - a, 1 + a], audio resampled and meshes interpolated in step
                (`speed_perturbed`): more voices and speaking rates from the same sentences.
                0: off. Validation and test are never perturbed.
        """
        super().__init__(
            data_dir=data_dir,
            subjects=subjects,
            fps=fps,
            batch_size=batch_size,
            num_workers=num_workers,
            max_seconds=max_seconds,
            generate_size=generate_size,
            generate_subjects=generate_subjects,
            seed=seed,
            speed_perturb=speed_perturb,
        )


class EmotionDataModule(_SpeechDataModule):
    """Labelled speech for the emotion extractor (DESIGN.md section 2, "Emotion extractor").

    Batches: audio [B, S], audio_lengths [B], label [B] (index into EMOTIONS), intensity [B]
    (0 for neutral), emotion [B, E], subject [B]. Meshes are not read.
    """

    with_meshes = False

    def __init__(
        self,
        data_dir: str = "data/builtin-small",
        subjects: list[str] | None = None,
        fps: int = 25,
        batch_size: int = 16,
        num_workers: int = 0,
        max_seconds: float | None = 3.0,
        generate_size: Literal["tiny", "small", "full"] = "small",
        generate_subjects: int | None = None,
        seed: int = 0,
    ) -> None:
        """Configure the data.

        Args:
            data_dir: Dataset folder in the dataset format. When it does not exist, the
                built-in synthetic dataset is generated there (see `generate_size`).
            subjects: Subject folder names to use; None for all.
            fps: Frame rate that sets the granularity of the random training windows.
            batch_size: Clips per batch.
            num_workers: DataLoader worker processes.
            max_seconds: Training clips are cut to random windows of at most this long; None
                for whole clips. Validation and test use whole clips.
            generate_size: Size preset of the built-in dataset generated when `data_dir` is
                missing.
            generate_subjects: Subjects to generate (None: the preset's default).
            seed: Seed of the generated dataset and of the random training windows.
        """
        super().__init__(
            data_dir=data_dir,
            subjects=subjects,
            fps=fps,
            batch_size=batch_size,
            num_workers=num_workers,
            max_seconds=max_seconds,
            generate_size=generate_size,
            generate_subjects=generate_subjects,
            seed=seed,
        )
