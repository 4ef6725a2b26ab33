"""The synthetic dataset generator: speech, rig motion and multi-view images in format v1.

`generate_dataset` writes the dataset format version 1 (docs/dataset.md) with exact ground
truth (DESIGN.md section 4). Per subject:

1. a face rig (the built-in procedural head or the ICT Face Model Light) with the subject's
   identity applied gives the neutral template (`template.npz`);
2. a scene (hair cap, neck, torso, appearance) is built around it, and cameras are placed on a
   180-degree arc at head height (`calibration.json`);
3. per sequence (one sentence in one emotion at one intensity) espeak-ng speaks the sentence
   with emotional prosody and a subject voice, phonemes become ARKit weights, the rig is
   evaluated per frame (`meshes.npy`, `audio.wav`, `meta.json`), and, for sequences with
   images, every frame is rendered into every camera by the independent triangle rasterizer
   (`images/`, `masks/`).

Everything is a pure function of (rig, size, subjects, seed, overrides): two runs with the
same arguments write byte-identical files.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from emotalk3d.constants import EMOTIONS, INTENSITY_LEVELS
from emotalk3d.data.format import (
    FORMAT_VERSION,
    DatasetFormatError,
    SequenceMeta,
    Template,
    read_dataset,
    write_calibration,
    write_frame_images,
    write_sequence,
    write_template,
)

GENERATOR = "emotalk3d.data.synth"
GENERATOR_VERSION = 1  # bump when the same seed would produce different data
VOICES = ("en-us", "en-us+f2", "en-us+m3", "en-us+f4", "en-us+m7")  # subject k: VOICES[k % 5]
RIGS = ("builtin", "ict")


@dataclass(frozen=True)
class SynthSize:
    """A size preset of the synthetic dataset (docs/dataset.md lists the numbers).

    Attributes:
        name: "tiny", "small" or "full".
        subjects: default number of subjects (identities).
        sentence_ids: sentences every subject speaks (ids of `sentences.SENTENCES`); None
            means all 48 (40 train, 4 val, 4 test).
        emotions_per_sentence: sequences per sentence; the emotions rotate through the 8
            classes so each class gets the same number of sequences, and every sentence is
            heard in several emotions and intensities (so the emotion is in the prosody, not
            the words).
        num_cameras: cameras on the 180-degree arc.
        resolution: square image size in pixels.
        image_sequences: sequences per subject that get images (None: all). Half of them
            (at least one) are neutral, since the canonical Gaussians train on neutral frames;
            from 4 on, one is an emotional validation sequence; the rest are emotional
            training sequences of distinct emotions. The others carry geometry and audio only
            (`has_images` False), for speech-to-geometry and emotion training.
            Rendering is by far the slowest step on a CPU, so this is the CPU presets' budget.
        rig_size: the rig's size (`emotalk3d.geometry.rig.load_rig`): the built-in head's
            resolution and the ICT rig's vertex budget (tiny ~1.4k / 1.5k, small ~4.9k / 5k,
            full ~19k / the whole ICT face).
        ssaa: supersampling per axis when rendering (anti-aliased edges and soft masks).
    """

    name: str
    subjects: int
    sentence_ids: tuple[str, ...] | None
    emotions_per_sentence: int
    num_cameras: int
    resolution: int
    image_sequences: int | None
    rig_size: str
    ssaa: int


SIZES: dict[str, SynthSize] = {
    # tests (under a minute on a 2-core CPU): the 4 shortest sentences of the splits (2 train,
    # 1 val, 1 test) x 2 emotions = 8 sequences; images for 2 (one neutral, one emotional)
    "tiny": SynthSize("tiny", subjects=1, sentence_ids=("s000", "s021", "s041", "s046"),
                      emotions_per_sentence=2, num_cameras=5, resolution=64,
                      image_sequences=2, rig_size="tiny", ssaa=1),
    # the CPU demo and CPU speech-to-geometry / emotion training: all 48 sentences x 4
    # emotions = 192 sequences per subject; images for 4 per subject (2 neutral, 1 emotional
    # training, 1 emotional validation)
    "small": SynthSize("small", subjects=2, sentence_ids=None, emotions_per_sentence=4,
                       num_cameras=11, resolution=128, image_sequences=4, rig_size="small",
                       ssaa=1),
    # the GPU benchmark: 48 sentences x 6 emotions, every sequence with images at 512 x 512
    "full": SynthSize("full", subjects=3, sentence_ids=None, emotions_per_sentence=6,
                      num_cameras=11, resolution=512, image_sequences=None, rig_size="full",
                      ssaa=2),
}  # fmt: skip


@dataclass(frozen=True)
class SequencePlan:
    """One sequence to generate: a sentence spoken in one emotion at one intensity."""

    name: str  # <emotion>_<level>_<sentence_id>, or neutral_<sentence_id>
    sentence_id: str
    sentence: str
    split: str
    emotion: str
    intensity: float
    images: bool
    seed: int


def get_size(size: str | SynthSize) -> SynthSize:
    """The preset called `size` (tiny, small, full), or `size` itself."""
    if isinstance(size, SynthSize):
        return size
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; expected one of {', '.join(SIZES)}")
    return SIZES[size]


def _seed(*parts: int) -> int:
    """A 31-bit seed derived from integers (stable across Python versions and platforms)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0]
               & 0x7FFFFFFF)  # fmt: skip


def plan_sequences(size: SynthSize, subject_index: int, seed: int) -> list[SequencePlan]:
    """The sequences of one subject, in a fixed order.

    Sentence i of the preset is spoken in EMOTIONS[(s_k i + j) mod 8] for j < E, where
    E = emotions_per_sentence and the stride s_k = 3, 5, 7, 1 for subjects k = 0, 1, 2, 3 (mod
    4). Every stride is coprime with 8, so over any 8 sentences every emotion occurs E times;
    subjects hear each sentence in different emotions; and the first sentence is always
    spoken neutral (every subject has neutral frames for its canonical Gaussians). Each
    emotion alternates mild (0.5) and strong (1.0); neutral has intensity 0. Which
    sequences get images: see `SynthSize.image_sequences`.
    """
    from emotalk3d.data.synth.sentences import SENTENCES, sentence

    chosen = SENTENCES if size.sentence_ids is None else [sentence(i) for i in size.sentence_ids]
    E = size.emotions_per_sentence
    if not 1 <= E <= len(EMOTIONS):
        raise ValueError(f"emotions_per_sentence must lie in 1..8, got {E}")
    stride = (3, 5, 7, 1)[subject_index % 4]
    uses: Counter = Counter()
    plans = []
    for i, s in enumerate(chosen):
        for j in range(E):
            emotion = EMOTIONS[(stride * i + j) % len(EMOTIONS)]
            if emotion == "neutral":
                intensity, name = 0.0, f"neutral_{s.id}"
            else:
                level = ("mild", "strong")[(uses[emotion] + subject_index) % 2]
                uses[emotion] += 1
                intensity = INTENSITY_LEVELS[level]
                name = f"{emotion}_{level}_{s.id}"
            plans.append(SequencePlan(name, s.id, s.text, s.split, emotion, intensity, True,
                                      _seed(seed, subject_index, i, j)))  # fmt: skip
    if size.image_sequences is None:
        return plans
    with_images = _image_choice(plans, size.image_sequences)
    return [replace(p, images=i in with_images) for i, p in enumerate(plans)]


def _image_choice(plans: list[SequencePlan], budget: int) -> set[int]:
    """Indices of the sequences that get images, `budget` of them: neutral training ones
    first (half the budget, at least one); with a budget of 4 or more, one emotional
    validation sequence (a held-out sentence for appearance validation); the rest emotional
    training sequences of distinct emotions."""
    if budget <= 0:
        return set()
    neutral = [i for i, p in enumerate(plans) if p.emotion == "neutral"]
    neutral.sort(key=lambda i: plans[i].split != "train")
    chosen = neutral[: max(1, (budget + 1) // 2)]
    emotional = [i for i, p in enumerate(plans) if p.emotion != "neutral"]
    if budget >= 4:
        chosen += [i for i in emotional if plans[i].split == "val"][:1]
    train = [i for i in emotional if plans[i].split == "train"]
    seen = {plans[i].emotion for i in chosen}
    for i in train:  # distinct emotions first
        if len(chosen) < budget and plans[i].emotion not in seen:
            seen.add(plans[i].emotion)
            chosen.append(i)
    for i in train:  # then anything left
        if len(chosen) < budget and i not in chosen:
            chosen.append(i)
    return set(chosen)


# --------------------------------------------------------------------------------------------
# adapters over the rig and motion modules


@dataclass
class SubjectRig:
    """A rig with one subject's identity applied: neutral + expression deltas only."""

    neutral: np.ndarray  # [P, 3] float32, mm (identity applied)
    faces: np.ndarray  # [F, 3] int32
    uvs: np.ndarray  # [P, 2] float32
    regions: dict[str, np.ndarray]  # name -> [P] bool
    expression_names: tuple[str, ...]
    expression_deltas: np.ndarray  # [K, P, 3] float32

    def evaluate(self, weights: np.ndarray) -> np.ndarray:  # [T, K] -> [T, P, 3] float32
        """Meshes for per-frame expression weights: neutral + weights @ deltas (one matmul)."""
        w = np.asarray(weights, dtype=np.float32)
        K, P = self.expression_deltas.shape[:2]
        if w.ndim != 2 or w.shape[1] != K:
            raise ValueError(f"expression weights must be [T, K={K}], got {list(w.shape)}")
        out = self.neutral.reshape(1, P * 3) + w @ self.expression_deltas.reshape(K, P * 3)
        return out.reshape(-1, P, 3).astype(np.float32, copy=False)

    def template(self) -> Template:
        """The dataset format's template: this subject's neutral mesh."""
        return Template(self.neutral.copy(), self.faces.copy(), self.uvs.copy(),
                        {k: m.copy() for k, m in self.regions.items()})  # fmt: skip


def load_base_rig(rig: str, size: SynthSize, ict_path: str | Path | None):
    """The shared LinearRig (emotalk3d.geometry.rig) for `rig` = builtin or ict, at the
    preset's rig size (vertex budget `rig.SIZE_MAX_VERTICES[size.rig_size]`)."""
    from emotalk3d.geometry.rig import find_ict_model, load_rig

    if rig == "ict":
        path = Path(ict_path) if ict_path is not None else find_ict_model()
        if path is None:
            raise FileNotFoundError(
                "the ICT Face Model Light was not found; pass --ict-path "
                "PATH/ict_facekit_light.npz, set $EMOTALK3D_ICT_MODEL, or use --rig builtin"
            )
        return load_rig("ict", size.rig_size, path=path)
    if rig == "builtin":
        return load_rig("builtin", size.rig_size)
    raise ValueError(f"unknown rig {rig!r}; expected one of {', '.join(RIGS)}")


def subject_rig(base, subject_index: int, seed: int) -> SubjectRig:
    """Apply a subject's identity to the base rig (both rigs have identity modes).

    Subject 0 is the rig's mean identity; subject k > 0 draws identity weights
    ~ N(0, identity_scale^2) from a seed derived from (seed, k). The rig is linear, so
    expression deltas do not depend on the identity.
    """
    identity = None
    if subject_index > 0 and base.identity_deltas is not None:
        identity = base.sample_identity(_seed(seed, subject_index, 0x1D))
    return SubjectRig(
        neutral=np.asarray(base.identity_neutral(identity), dtype=np.float32),
        faces=np.asarray(base.faces, dtype=np.int32),
        uvs=np.asarray(base.uvs, dtype=np.float32),
        regions={k: np.asarray(v, dtype=bool) for k, v in base.regions.items()},
        expression_names=tuple(base.expression_names),
        expression_deltas=np.asarray(base.expression_deltas, dtype=np.float32),
    )


def utterance(plan: SequencePlan, rig: SubjectRig, voice: str, pitch_offset: float, fps: float):
    """(Speech, expression weights [T, K]) of one planned sequence, T = speech frames."""
    from emotalk3d.data.synth import motion

    speech, weights = motion.synthesize_utterance(
        plan.sentence,
        plan.emotion,
        plan.intensity,
        fps=fps,
        rig_expression_names=list(rig.expression_names),
        seed=plan.seed,
        voice=voice,
        pitch_offset=pitch_offset,
    )
    weights = np.asarray(weights, dtype=np.float64)
    T = speech.num_frames(fps)
    if weights.shape != (T, len(rig.expression_names)):
        raise RuntimeError(
            f"motion returned weights {list(weights.shape)}, expected [T={T}, "
            f"K={len(rig.expression_names)}] for {plan.name}"
        )
    return speech, weights


# --------------------------------------------------------------------------------------------
# the generator


@dataclass
class SubjectPlan:
    """Everything that defines one subject."""

    name: str
    index: int
    voice: str
    pitch_offset: float
    appearance_seed: int
    sequences: list[SequencePlan]


def plan_subjects(size: SynthSize, subjects: int, seed: int) -> list[SubjectPlan]:
    """The subjects of a dataset: voices, pitch offsets, appearance seeds and sequences."""
    out = []
    for k in range(subjects):
        rng = np.random.default_rng(_seed(seed, k, 0x5B))
        pitch = 0.0 if k == 0 else float(np.round(rng.uniform(-15.0, 15.0), 2))
        out.append(SubjectPlan(f"subj{k:02d}", k, VOICES[k % len(VOICES)], pitch,
                               _seed(seed, k, 0xA9), plan_sequences(size, k, seed)))  # fmt: skip
    return out


def make_cameras(num: int, resolution: int) -> list:
    """`num` cameras on a 180-degree arc at head height, looking at the rig origin (between
    the eyes, 105 mm behind the nose tip: the shared rig convention), square images."""
    from emotalk3d.render.cameras import arc_cameras

    return arc_cameras(num, 180.0, width=resolution)


def _write_subject_sequence(
    subject_dir: Path,
    plan: SequencePlan,
    rig: SubjectRig,
    scene,
    cameras,
    voice: str,
    pitch_offset: float,
    fps: float,
    ssaa: int,
) -> int:
    """Generate and write one sequence; returns its frame count."""
    from emotalk3d.data.synth.scene import render_views

    speech, weights = utterance(plan, rig, voice, pitch_offset, fps)
    meshes = rig.evaluate(weights)  # [T, P, 3]
    T = len(meshes)
    meta = SequenceMeta(
        emotion=plan.emotion,
        intensity=plan.intensity,
        sentence=plan.sentence,
        fps=fps,
        num_frames=T,
        sentence_id=plan.sentence_id,
        split=plan.split,
        extra={"voice": voice, "pitch_offset": pitch_offset, "seed": plan.seed},
    )
    seq_dir = subject_dir / "sequences" / plan.name
    if plan.images:
        for t in range(T):
            images, masks = render_views(scene, meshes[t], cameras, ssaa=ssaa,
                                         camera_batch=len(cameras))  # fmt: skip
            for c, cam in enumerate(cameras):
                write_frame_images(seq_dir, cam.id, t, images[c], mask=masks[c])
    # meta.json is written last, so an interrupted run never leaves a "complete" sequence
    write_sequence(subject_dir, plan.name, meta, meshes, speech.audio, sample_rate=16000)
    return T


def generate_dataset(
    out: str | Path,
    rig: str = "builtin",
    size: str | SynthSize = "tiny",
    subjects: int | None = None,
    seed: int = 0,
    progress: bool = True,
    ict_path: str | Path | None = None,
    num_cameras: int | None = None,
    resolution: int | None = None,
    fps: float = 25,
    overwrite: bool = True,
) -> Path:
    """Generate a synthetic dataset in the dataset format v1.

    Args:
        out: output folder (created). A previous synthetic dataset there is replaced (when
            `overwrite`); a folder holding any other dataset is refused.
        rig: "builtin" (procedural head, no external file) or "ict" (ICT Face Model Light).
        size: a preset name (tiny, small, full) or a SynthSize.
        subjects: number of identities (default: the preset's).
        seed: the seed of everything; the same arguments write byte-identical files.
        progress: show a tqdm progress bar (sequences).
        ict_path: the ICT .npz (default: ../shared/assets/ict-facekit or $EMOTALK3D_ICT_MODEL).
        num_cameras: cameras on the 180-degree arc (default: the preset's).
        resolution: square image size (default: the preset's).
        fps: motion frame rate.
        overwrite: replace a dataset this generator wrote earlier in `out`; False refuses.

    Returns:
        The dataset folder.
    """
    from tqdm import tqdm

    from emotalk3d import __version__
    from emotalk3d.data.synth.scene import build_scene
    from emotalk3d.data.synth.sentences import sentences

    preset = get_size(size)
    if rig not in RIGS:
        raise ValueError(f"unknown rig {rig!r}; expected one of {', '.join(RIGS)}")
    preset = replace(
        preset,
        subjects=preset.subjects if subjects is None else int(subjects),
        num_cameras=preset.num_cameras if num_cameras is None else int(num_cameras),
        resolution=preset.resolution if resolution is None else int(resolution),
    )
    if preset.subjects < 1 or preset.num_cameras < 1 or preset.resolution < 8:
        raise ValueError(
            f"need subjects >= 1, cameras >= 1 and resolution >= 8, got {preset.subjects}, "
            f"{preset.num_cameras}, {preset.resolution}"
        )
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _clear_previous(out, overwrite)

    plans = plan_subjects(preset, preset.subjects, seed)
    base = load_base_rig(rig, preset, ict_path)
    total = sum(len(s.sequences) for s in plans)
    bar = tqdm(total=total, desc=f"synth {preset.name}", unit="seq", disable=not progress)
    subjects_info = []
    for sp in plans:
        srig = subject_rig(base, sp.index, seed)
        subject_dir = out / sp.name
        cameras = make_cameras(preset.num_cameras, preset.resolution)
        write_calibration(subject_dir, cameras)
        write_template(subject_dir, srig.template())
        scene = build_scene(srig.neutral, srig.faces, srig.regions, sp.appearance_seed,
                            uvs=srig.uvs)  # fmt: skip
        frames = 0
        for plan in sp.sequences:
            bar.set_postfix_str(f"{sp.name}/{plan.name}", refresh=False)
            frames += _write_subject_sequence(subject_dir, plan, srig, scene, cameras, sp.voice,
                                              sp.pitch_offset, fps, preset.ssaa)  # fmt: skip
            bar.update(1)
        subjects_info.append({
            "name": sp.name, "voice": sp.voice, "pitch_offset": sp.pitch_offset,
            "appearance_seed": sp.appearance_seed, "sequences": len(sp.sequences),
            "frames": frames, "vertices": int(len(srig.neutral)),
        })  # fmt: skip
    bar.close()
    info = {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "package_version": __version__,
        "format_version": FORMAT_VERSION,
        "rig": rig,
        "size": preset.name,
        "preset": asdict(preset),
        "seed": seed,
        "fps": fps,
        "subjects": subjects_info,
        "sentence_split": {s: [x.id for x in sentences(s)] for s in ("train", "val", "test")},
    }
    text = json.dumps(info, indent=2) + "\n"
    tmp = out / ".dataset.json.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out / "dataset.json")
    return out


def _clear_previous(out: Path, overwrite: bool) -> None:
    """Remove a previous synthetic dataset from `out`; refuse to touch anything else."""
    subjects = [p for p in out.iterdir() if p.is_dir() and (p / "calibration.json").exists()]
    info = out / "dataset.json"
    generated = False
    if info.is_file():
        try:
            generated = json.loads(info.read_text(encoding="utf-8")).get("generator") == GENERATOR
        except (OSError, json.JSONDecodeError, AttributeError):
            generated = False
    if not subjects and not info.exists():
        return
    if not generated or not overwrite:
        raise FileExistsError(
            f"{out} already holds a dataset{'' if generated else ' not made by this generator'}; "
            f"choose another --out or delete it first"
        )
    for p in [*subjects, info]:
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def read_dataset_info(root: str | Path) -> dict:
    """The generator's dataset.json of a synthetic dataset."""
    path = Path(root) / "dataset.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetFormatError(f"{path} is missing or not JSON ({err})") from err


def preview_frames(num_frames: int, count: int) -> list[int]:
    """`count` frame indices spread evenly over a sequence (first and last included)."""
    count = max(1, min(count, num_frames))
    return sorted({int(round(x)) for x in np.linspace(0, num_frames - 1, count)})


def write_preview(
    root: str | Path,
    out: str | Path,
    subject: str | None = None,
    sequence: str | None = None,
    frames: int = 6,
    cameras: Sequence[str] | None = None,
) -> Path:
    """Write a contact sheet PNG (rows: cameras, columns: frames) of one sequence.

    Args:
        root: the dataset folder.
        out: the PNG to write.
        subject: subject name (default: the first).
        sequence: sequence name (default: the first non-neutral sequence with images, else
            the first with images).
        frames: number of frames (columns), evenly spread.
        cameras: camera ids (rows; default: all).
    """
    from emotalk3d.data.synth.preview import contact_sheet

    subjects = read_dataset(root)
    subj = subjects[0] if subject is None else next((s for s in subjects if s.name == subject),
                                                    None)  # fmt: skip
    if subj is None:
        names = ", ".join(s.name for s in subjects)
        raise ValueError(f"no subject {subject!r} in {root}; subjects: {names}")
    with_images = [s for s in subj.sequences if s.has_images]
    if not with_images:
        raise ValueError(f"subject {subj.name} has no sequence with images to preview")
    if sequence is None:
        seq = next((s for s in with_images if s.meta.emotion != "neutral"), with_images[0])
    else:
        seq = next((s for s in with_images if s.name == sequence), None)
        if seq is None:
            names = ", ".join(s.name for s in with_images)
            raise ValueError(f"no sequence {sequence!r} with images in {subj.name}: {names}")
    cam_ids = [c.id for c in subj.cameras] if cameras is None else list(cameras)
    idx = preview_frames(seq.meta.num_frames, frames)
    grid = [[seq.load_image(c, t) for t in idx] for c in cam_ids]
    out = Path(out)
    contact_sheet(grid, row_labels=cam_ids, col_labels=[f"frame {t}" for t in idx], path=out)
    return out


def ensure_dataset(
    data_dir: str | Path,
    size: str = "small",
    subjects: int | None = None,
    seed: int = 0,
) -> Path:
    """Return `data_dir`, generating the built-in synthetic dataset there when it is missing.

    A missing or empty folder is filled with `emotalk3d.data.synth.generate.generate_dataset`
    (built-in rig) written to a temporary sibling folder and renamed when complete, so an
    interrupted generation never leaves a half-written dataset. An existing folder must be in
    the dataset format.

    Raises:
        DatasetFormatError: the folder exists but is not a dataset in the format.
    """
    path = Path(data_dir)
    if path.is_dir() and any(path.iterdir()):
        try:
            read_dataset(path)
        except DatasetFormatError as err:
            raise DatasetFormatError(
                f"{path} is not a dataset in the emotalk3d dataset format ({err}). Point "
                "data_dir at a dataset folder, or at a folder that does not exist yet to "
                "generate the built-in synthetic dataset there."
            ) from err
        return path
    if path.exists() and not path.is_dir():
        raise DatasetFormatError(f"data_dir {path} is a file; expected a dataset folder")
    print(
        f"{path} does not exist: generating the built-in synthetic dataset (size {size}, "
        f"seed {seed}) there; later runs reuse it",
        flush=True,
    )
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    generate_dataset(tmp, rig="builtin", size=size, subjects=subjects, seed=seed, progress=True)
    if path.is_dir():  # an empty folder left by the user
        path.rmdir()
    os.replace(tmp, path)
    print(f"wrote {path}", flush=True)
    return path
