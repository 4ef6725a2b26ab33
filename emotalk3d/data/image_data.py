"""A subject's multi-view frames for the Gaussian appearance stages (DESIGN.md §2, §4).

Training batches hold `batch_cameras` views of ONE frame (one render call with C cameras):

    image [C, H, W, 3] float in [0, 1], mask [C, H, W], K [C, 3, 3], world_to_cam [C, 4, 4],
    points [C, P, 3] (the frame's sparse face points, identical rows), emotion [C, E],
    frame_key [C] (index of the frame in `frames`), camera [C] (camera index)

Frame pools:
- "canonical": neutral, non-speaking frames: frames of neutral-emotion training sequences whose
  lips stay within `neutral_threshold` mm (RMS) of the template (at least
  `min_canonical_frames`, the closest ones, whatever the threshold);
- "dynamic": every frame of every training sequence with images.

The pool in use is a mutable setting (`set_stage`) that the batch sampler reads for every
batch, so a LightningModule can switch from the canonical to the dynamic stage at a step within
one fit. Validation uses held-out cameras (never trained on) on val sentences.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from emotalk3d.constants import emotion_vector
from emotalk3d.data.format import (
    Camera,
    DatasetFormatError,
    SequenceInfo,
    SubjectInfo,
    read_dataset,
)
from emotalk3d.data.synth.generate import ensure_dataset

Stage = Literal["canonical", "dynamic"]


@dataclass(frozen=True)
class FrameRef:
    """One frame of one sequence."""

    sequence: int  # index into SubjectDataModule.sequences
    frame: int


def select_neutral_frames(
    meshes: np.ndarray,  # [T, P, 3] mm
    template: np.ndarray,  # [P, 3] mm
    region: np.ndarray | None,  # [P] bool (lips), None for all points
    threshold: float,
) -> np.ndarray:  # [T] float, RMS displacement (mm)
    """RMS displacement of `region` from the template per frame (the caller thresholds it)."""
    sel = slice(None) if region is None or not region.any() else region
    diff = meshes[:, sel] - template[None, sel]
    return np.sqrt((diff**2).sum(-1).mean(-1))


def default_val_cameras(cameras: list[Camera], num: int) -> list[str]:
    """`num` held-out cameras spread over the arc, avoiding both ends and the centre (the
    frontal view stays in training): for 11 cameras and num=2, indices 3 and 7."""
    n = len(cameras)
    if num <= 0:
        return []
    if num >= n:
        raise ValueError(f"cannot hold out {num} of {n} cameras; keep at least one for training")
    picks = sorted({round((k + 1) * (n - 1) / (num + 1)) for k in range(num)})
    free = [i for i in range(n) if i not in picks]
    centre = (n - 1) // 2
    if centre in picks and free:  # keep the frontal camera for training
        picks[picks.index(centre)] = min(free, key=lambda i: abs(i - centre))
    while len(picks) < num:  # rounding collisions
        picks.append(next(i for i in range(n) if i not in picks))
    return [cameras[i].id for i in sorted(picks)]


class FrameViewDataset(Dataset):
    """Item i = (frame i // C_all, camera i % C_all): one image with its camera and geometry."""

    def __init__(self, module: SubjectDataModule, frames: list[FrameRef], cameras: list[int]):
        self.module = module
        self.frames = frames
        self.cameras = cameras

    def __len__(self) -> int:
        return len(self.frames) * len(self.cameras)

    def index(self, frame_key: int, camera_pos: int) -> int:
        return frame_key * len(self.cameras) + camera_pos

    def __getitem__(self, i: int) -> dict:
        fk, cp = divmod(int(i), len(self.cameras))
        ref = self.frames[fk]
        cam_idx = self.cameras[cp]
        m = self.module
        img, mask = m.load_view(ref, cam_idx)
        K, w2c = m.camera_matrices(cam_idx)
        return {
            "image": img,  # [H, W, 3]
            "mask": mask,  # [H, W]
            "K": K,  # [3, 3]
            "world_to_cam": w2c,  # [4, 4]
            "points": m.frame_points(ref),  # [P, 3]
            "emotion": m.sequence_emotion(ref.sequence),  # [E]
            "frame_key": fk,
            "camera": cam_idx,
        }


class FrameBatchSampler(Sampler[list[int]]):
    """Batches of `batch_cameras` distinct cameras of one random frame of the current pool.

    `pools` maps a stage to frame keys; `stage_of()` is called for every batch, so switching the
    stage takes effect on the next batch. `length` batches make an epoch.
    """

    def __init__(
        self,
        dataset: FrameViewDataset,
        pools: dict[str, list[int]],
        stage_of,
        batch_cameras: int,
        length: int,
        seed: int = 0,
    ):
        self.dataset = dataset
        self.pools = pools
        self.stage_of = stage_of
        self.batch_cameras = min(batch_cameras, len(dataset.cameras))
        self.length = length
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        rng = random.Random(self.seed * 100_003 + self.epoch)
        self.epoch += 1
        ncam = len(self.dataset.cameras)
        for _ in range(self.length):
            pool = self.pools[self.stage_of()]
            fk = pool[rng.randrange(len(pool))]
            cams = rng.sample(range(ncam), self.batch_cameras)
            yield [self.dataset.index(fk, c) for c in cams]


class _FixedBatchSampler(Sampler[list[int]]):
    """Every listed frame once, with all of the dataset's cameras (validation)."""

    def __init__(self, dataset: FrameViewDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset.frames)

    def __iter__(self):
        for fk in range(len(self.dataset.frames)):
            yield [self.dataset.index(fk, c) for c in range(len(self.dataset.cameras))]


class SubjectDataModule(pl.LightningDataModule):
    """Multi-view frames of one subject for canonical and dynamic Gaussian training
    (EmoTalk3D §3.3-3.4; DESIGN.md §2, §4). Generates the built-in synthetic subject when
    `data_dir` does not exist."""

    def __init__(
        self,
        data_dir: str = "data/builtin-small",
        subject: str | None = None,
        stage: Stage = "canonical",
        val_cameras: list[str] | None = None,
        num_val_cameras: int = 2,
        image_scale: float = 1.0,
        batch_cameras: int = 4,
        steps_per_epoch: int = 100,
        neutral_threshold: float = 0.5,
        min_canonical_frames: int = 4,
        val_frames_per_sequence: int = 2,
        max_val_sequences: int = 2,
        generate_size: str = "small",
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        """
        Args:
            data_dir: dataset folder (or one subject folder) in the dataset format; generated
                with the built-in synthetic rig when it does not exist.
            subject: subject folder name; None takes the first (sorted) subject.
            stage: the initial frame pool ("canonical" or "dynamic"); a SubjectModule switches
                it at its stage step.
            val_cameras: ids of held-out validation cameras; None picks `num_val_cameras`.
            num_val_cameras: number of held-out cameras when `val_cameras` is None.
            image_scale: resize factor applied to the images (intrinsics follow).
            batch_cameras: views of one frame per training batch.
            steps_per_epoch: training batches per epoch.
            neutral_threshold: lips RMS displacement (mm) below which a neutral frame counts as
                non-speaking (canonical pool).
            min_canonical_frames: canonical pool size at least (closest frames to the template).
            val_frames_per_sequence: evenly spaced frames per validation sequence.
            max_val_sequences: validation sequences used at most.
            generate_size: size of the synthetic subject generated when `data_dir` is missing.
            seed: seed of batch sampling and of the generated dataset.
            num_workers: DataLoader workers (0 keeps the image cache in this process).
        """
        super().__init__()
        self.save_hyperparameters()
        if stage not in ("canonical", "dynamic"):
            raise ValueError(f"stage must be 'canonical' or 'dynamic', got {stage!r}")
        if not 0 < image_scale <= 4:
            raise ValueError(f"image_scale must lie in (0, 4], got {image_scale}")
        if batch_cameras < 1:
            raise ValueError(f"batch_cameras must be >= 1, got {batch_cameras}")
        self.data_dir = Path(data_dir)
        self.subject_name = subject
        self.stage = stage
        self.val_camera_ids = list(val_cameras) if val_cameras is not None else None
        self.num_val_cameras = num_val_cameras
        self.image_scale = image_scale
        self.batch_cameras = batch_cameras
        self.steps_per_epoch = steps_per_epoch
        self.neutral_threshold = neutral_threshold
        self.min_canonical_frames = min_canonical_frames
        self.val_frames_per_sequence = val_frames_per_sequence
        self.max_val_sequences = max_val_sequences
        self.generate_size = generate_size
        self.seed = seed
        self.num_workers = num_workers
        self.subject: SubjectInfo | None = None
        self._image_cache: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._mesh_cache: dict[int, torch.Tensor] = {}

    # ------------------------------------------------------------------ setup
    def prepare_data(self) -> None:
        ensure_dataset(self.data_dir, size=self.generate_size, subjects=1, seed=self.seed)

    def setup(self, stage: str | None = None) -> None:
        if self.subject is not None:
            return
        root = ensure_dataset(self.data_dir, size=self.generate_size, subjects=1, seed=self.seed)
        subjects = read_dataset(root)
        if self.subject_name is None:
            subj = subjects[0]
        else:
            names = [s.name for s in subjects]
            if self.subject_name not in names:
                raise ValueError(
                    f"subject {self.subject_name!r} not found in {self.data_dir}; "
                    f"subjects: {', '.join(names)}"
                )
            subj = subjects[names.index(self.subject_name)]
        self.subject = subj
        self.sequences: list[SequenceInfo] = [s for s in subj.sequences if s.has_images]
        if not self.sequences:
            raise DatasetFormatError(
                f"subject {subj.path} has no sequence with images/; appearance training needs "
                f"multi-view images (regenerate with `emotalk3d data synth`)"
            )
        ids = [c.id for c in subj.cameras]
        if self.val_camera_ids is None:
            self.val_camera_ids = default_val_cameras(subj.cameras, self.num_val_cameras)
        for cid in self.val_camera_ids:
            if cid not in ids:
                raise ValueError(f"val camera {cid!r} is not a camera of {subj.name}: {ids}")
        self.val_camera_idx = [ids.index(c) for c in self.val_camera_ids]
        self.train_camera_idx = [i for i in range(len(ids)) if i not in self.val_camera_idx]
        if not self.train_camera_idx:
            raise ValueError("every camera is held out for validation; keep one for training")
        self._build_pools()

    def _build_pools(self) -> None:
        seqs = self.sequences
        train = [i for i, s in enumerate(seqs) if s.meta.split in ("train", None)]
        if not train:
            train = list(range(len(seqs)))
        val = [i for i, s in enumerate(seqs) if s.meta.split == "val"]
        if not val:
            val = [i for i, s in enumerate(seqs) if s.meta.split == "test"] or train[:1]
        self.train_sequences, self.val_sequences = train, val[: self.max_val_sequences]
        frames: list[FrameRef] = [
            FrameRef(i, f) for i in train for f in range(seqs[i].meta.num_frames)
        ]
        self.frames = frames
        # canonical pool: neutral sequences, lips near the template
        tmpl = self.subject.template
        lips = tmpl.regions.get("lips")
        neutral = [i for i in train if seqs[i].meta.emotion == "neutral"] or train
        cands, dists = [], []
        for k, ref in enumerate(frames):
            if ref.sequence in neutral:
                cands.append(k)
        for i in neutral:
            dists.append(
                select_neutral_frames(
                    self.sequence_meshes(i).numpy(), tmpl.vertices, lips, self.neutral_threshold
                )
            )
        d = np.concatenate(dists) if dists else np.zeros(0)
        order = np.argsort(d, kind="stable")
        keep = [cands[j] for j in order if d[j] <= self.neutral_threshold]
        if len(keep) < self.min_canonical_frames:
            keep = [cands[j] for j in order[: self.min_canonical_frames]]
        self.pools = {"canonical": sorted(keep), "dynamic": list(range(len(frames)))}
        # validation frames: evenly spaced frames of val sequences, held-out cameras
        vf: list[FrameRef] = []
        for i in self.val_sequences:
            n = seqs[i].meta.num_frames
            k = min(self.val_frames_per_sequence, n)
            vf += [FrameRef(i, int(f)) for f in np.linspace(0, n - 1, k).round().astype(int)]
        self.val_frames = vf

    # ------------------------------------------------------------------ accessors
    @property
    def template(self):
        """The subject's Template (vertices [P, 3], faces, uvs, regions)."""
        assert self.subject is not None, "call setup() first"
        return self.subject.template

    def set_stage(self, stage: Stage) -> None:
        """Switch the training frame pool (takes effect with the next batch)."""
        if stage not in ("canonical", "dynamic"):
            raise ValueError(f"stage must be 'canonical' or 'dynamic', got {stage!r}")
        self.stage = stage

    def sequence_meshes(self, seq: int) -> torch.Tensor:  # [T, P, 3]
        if seq not in self._mesh_cache:
            self._mesh_cache[seq] = torch.from_numpy(
                np.ascontiguousarray(self.sequences[seq].load_meshes(), dtype=np.float32)
            )
        return self._mesh_cache[seq]

    def frame_points(self, ref: FrameRef) -> torch.Tensor:  # [P, 3]
        return self.sequence_meshes(ref.sequence)[ref.frame]

    def sequence_emotion(self, seq: int) -> torch.Tensor:  # [E]
        meta = self.sequences[seq].meta
        return emotion_vector(meta.emotion, float(meta.intensity))

    def image_size(self, cam_idx: int) -> tuple[int, int]:
        """(width, height) after `image_scale`."""
        cam = self.subject.cameras[cam_idx]
        return max(1, round(cam.width * self.image_scale)), max(
            1, round(cam.height * self.image_scale)
        )

    def camera_matrices(self, cam_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(K [3, 3], world_to_cam [4, 4]) float32, K scaled to the resized image."""
        cam = self.subject.cameras[cam_idx]
        w, h = self.image_size(cam_idx)
        K = np.asarray(cam.K, np.float64).copy()
        K[0] *= w / cam.width
        K[1] *= h / cam.height
        return (
            torch.tensor(K, dtype=torch.float32),
            torch.tensor(np.asarray(cam.world_to_cam), dtype=torch.float32),
        )

    def load_view(self, ref: FrameRef, cam_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(image [H, W, 3] float32, mask [H, W] float32; ones when the dataset has none),
        cached in memory as uint8."""
        key = (ref.sequence, ref.frame, cam_idx)
        if key not in self._image_cache:
            seq = self.sequences[ref.sequence]
            cid = self.subject.cameras[cam_idx].id
            img = seq.load_image(cid, ref.frame)
            mask = seq.load_mask(cid, ref.frame)
            if mask is None:
                mask = np.ones(img.shape[:2], np.float32)
            w, h = self.image_size(cam_idx)
            if (img.shape[1], img.shape[0]) != (w, h):
                from PIL import Image

                img = (
                    np.asarray(
                        Image.fromarray((img * 255).round().astype(np.uint8)).resize(
                            (w, h), Image.BILINEAR
                        ),
                        np.float32,
                    )
                    / 255.0
                )
                mask = (
                    np.asarray(
                        Image.fromarray((mask * 255).round().astype(np.uint8)).resize(
                            (w, h), Image.BILINEAR
                        ),
                        np.float32,
                    )
                    / 255.0
                )
            self._image_cache[key] = (
                torch.from_numpy((img * 255).round().astype(np.uint8)),
                torch.from_numpy((mask * 255).round().astype(np.uint8)),
            )
        img8, mask8 = self._image_cache[key]
        return img8.float() / 255.0, mask8.float() / 255.0

    # ------------------------------------------------------------------ loaders
    def train_dataset(self) -> FrameViewDataset:
        return FrameViewDataset(self, self.frames, self.train_camera_idx)

    def train_dataloader(self) -> DataLoader:
        ds = self.train_dataset()
        sampler = FrameBatchSampler(
            ds,
            self.pools,
            lambda: self.stage,
            self.batch_cameras,
            self.steps_per_epoch,
            seed=self.seed,
        )
        return DataLoader(ds, batch_sampler=sampler, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        ds = FrameViewDataset(self, self.val_frames, self.val_camera_idx)
        return DataLoader(ds, batch_sampler=_FixedBatchSampler(ds), num_workers=self.num_workers)

    def frames_dataloader(self, frames: list[FrameRef], cameras: list[int]) -> DataLoader:
        """All `cameras` of each listed frame, one frame per batch (benchmarks)."""
        ds = FrameViewDataset(self, frames, cameras)
        return DataLoader(ds, batch_sampler=_FixedBatchSampler(ds), num_workers=0)
