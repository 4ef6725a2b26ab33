"""The inference bundle: one folder with everything `TalkingHead` needs (docs/inference.md).

Layout (format version 1)::

    <bundle>/
      manifest.json                 # format, versions, component configs, fps, subjects
      audio_encoder/                # HubertModel.save_pretrained: config.json + model.safetensors
      s2g/model.safetensors         # S2GNet weights (without the HuBERT model) + templates, masks
      emotion/                      # EmotionExtractor.save_pretrained (backbone, head, settings)
      appearance/<subject>.safetensors + .json   # gaussians.model.save_appearance, one per subject
      rig/rig.safetensors + rig.json             # optional: the face rig, for ARKit export

Every tensor is stored as safetensors; nothing is unpickled when a bundle is read. Reading
imports no Lightning. `export_bundle` builds a bundle from the Lightning checkpoints of the
three training runs (it imports the LightningModules lazily: it is a training-side tool, and its
`torch.load` runs with `weights_only=True`); `save_bundle` does the same from plain modules.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from emotalk3d import __version__
from emotalk3d.constants import EMOTION_DIM, EMOTIONS

BUNDLE_FORMAT = "emotalk3d-bundle"
BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
REQUIRED_COMPONENTS = ("audio_encoder", "s2g", "emotion", "appearance")
REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_BUNDLE = REPO_ROOT / "checkpoints" / "demo"

REGENERATE_HINT = (
    "restore the built-in demo with `git checkout checkpoints/demo` or rebuild it from scratch "
    "with `bash scripts/build_demo.sh` (written to checkpoints/demo), or train "
    "with `lightning fit -c configs/s2g.yaml`, `lightning fit -c configs/emotion.yaml` and "
    "`lightning fit -c configs/subject.yaml`, then export with `emotalk3d bundle --s2g S2G.ckpt "
    "--emotion EMOTION.ckpt --subject SUBJECT.ckpt --out FOLDER`"
)


@contextmanager
def _quiet_hf() -> Iterator[None]:
    """Hide transformers' per-shard progress bars while a bundle is read or written."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


class BundleError(ValueError):
    """A bundle folder that cannot be used: missing, incomplete or from another version."""


# ------------------------------------------------------------------------------ manifest
def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """Read and check `folder/manifest.json` (cheap: no weights are read).

    Raises:
        BundleError: the folder or manifest is missing, unreadable, of another format or
            version, or lacks a required component; the message names the folder and how to
            rebuild it.
    """
    folder = Path(folder)
    if not folder.exists():
        raise BundleError(
            f"no checkpoint bundle at {folder}: the folder does not exist; {REGENERATE_HINT}"
        )
    if not folder.is_dir():
        raise BundleError(
            f"checkpoint {folder} is a file, but a bundle is a folder with "
            f"{MANIFEST}; {REGENERATE_HINT}"
        )
    path = folder / MANIFEST
    if not path.is_file():
        raise BundleError(
            f"{folder} is not an emotalk3d inference bundle (no {MANIFEST}); {REGENERATE_HINT}"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{path} is not valid JSON ({err}); {REGENERATE_HINT}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(
            f"{path} is not an emotalk3d bundle manifest (format "
            f"{manifest.get('format') if isinstance(manifest, dict) else None!r}, "
            f"expected {BUNDLE_FORMAT!r}); {REGENERATE_HINT}"
        )
    version = manifest.get("format_version")
    if version != BUNDLE_VERSION:
        made_by = manifest.get("emotalk3d_version", "unknown")
        raise BundleError(
            f"the bundle {folder} has format version {version} (written by emotalk3d "
            f"{made_by}), but this emotalk3d {__version__} reads version {BUNDLE_VERSION}; "
            f"re-export it with this version: {REGENERATE_HINT}"
        )
    components = manifest.get("components", {})
    missing = [c for c in REQUIRED_COMPONENTS if c not in components]
    if missing:
        raise BundleError(
            f"the bundle {folder} lacks the component(s) {', '.join(missing)} in "
            f"{MANIFEST}; {REGENERATE_HINT}"
        )
    for name, comp in components.items():
        for rel in _component_paths(name, comp):
            if not (folder / rel).exists():
                raise BundleError(
                    f"the bundle {folder} is incomplete: component {name!r} needs "
                    f"{folder / rel}, which is missing; {REGENERATE_HINT}"
                )
    if tuple(manifest.get("emotions", EMOTIONS)) != EMOTIONS:
        raise BundleError(
            f"the bundle {folder} was trained with emotions "
            f"{manifest.get('emotions')}, this version uses {list(EMOTIONS)}; "
            f"{REGENERATE_HINT}"
        )
    return manifest


def _component_paths(name: str, comp: dict[str, Any]) -> list[str]:
    if name == "appearance":
        files = list(comp.get("subjects", {}).values())
        return files + [str(Path(f).with_suffix(".json")) for f in files]
    if name == "rig":
        return [comp["path"], str(Path(comp["path"]).with_suffix(".json"))]
    return [comp["path"]]


def appearance_subjects(manifest: dict[str, Any]) -> list[str]:
    """Names of the subjects whose Gaussian heads the bundle holds (the first is the default)."""
    return list(manifest["components"]["appearance"]["subjects"])


# ------------------------------------------------------------------------------ loaded bundle
@dataclass
class Bundle:
    """A loaded inference bundle (plain modules in eval mode, on one device)."""

    folder: Path
    manifest: dict[str, Any]
    s2g: nn.Module  # S2GNet with its HubertEncoder
    extractor: nn.Module  # EmotionExtractor
    heads: dict[str, nn.Module]  # subject -> GaussianHead
    s2g_subjects: list[str]
    s2g_templates: Tensor  # [num_subjects, P, 3]
    regions: dict[str, Tensor] = field(default_factory=dict)  # name -> [P] bool
    rig: Any = None  # LinearRig or None


def s2g_config(net: nn.Module) -> dict[str, Any]:
    """Constructor arguments of an `S2GNet` (except the audio encoder), read from the module."""
    config = net.config()
    config.pop("dropout", None)  # inference only: no dropout
    if config.get("head_rank") is None:  # bundles written before head_rank existed
        config.pop("head_rank", None)
    return config


@_quiet_hf()
def load_bundle(
    folder: str | os.PathLike, device: str | torch.device = "cpu", subjects: list[str] | None = None
) -> Bundle:
    """Load a bundle's modules (safetensors only; no Lightning import).

    Args:
        folder: The bundle folder.
        device: Where the modules go.
        subjects: Appearance subjects to load (default: all).

    Raises:
        BundleError: see `read_manifest`; also an unknown subject name.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from emotalk3d.audio.emotion import EmotionExtractor
    from emotalk3d.audio.hubert import HubertEncoder
    from emotalk3d.gaussians.model import load_appearance
    from emotalk3d.geometry.s2gnet import S2GNet

    folder = Path(folder)
    manifest = read_manifest(folder)
    comps = manifest["components"]
    enc_cfg = comps["audio_encoder"]
    try:
        encoder = HubertEncoder(
            pretrained=str(folder / enc_cfg["path"]),
            freeze="all",
            layer=enc_cfg.get("layer", "last"),
            normalize=bool(enc_cfg.get("normalize", True)),
        )
        s2g_cfg = comps["s2g"]
        net = S2GNet(audio_encoder=encoder, **s2g_cfg["config"])
        state = load_file(str(folder / s2g_cfg["path"]))
        templates = state.pop("subject_templates").float()
        regions = {
            k.split(".", 1)[1]: state.pop(k).bool() for k in list(state) if k.startswith("regions.")
        }
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("audio_encoder.model.")]
        if missing or unexpected:
            raise BundleError(
                f"{folder / s2g_cfg['path']} does not fit S2GNet{s2g_cfg['config']}"
                f": missing {missing}, unexpected {unexpected}; "
                f"{REGENERATE_HINT}"
            )
        extractor = EmotionExtractor(pretrained=str(folder / comps["emotion"]["path"]))
        available = appearance_subjects(manifest)
        wanted = available if subjects is None else list(subjects)
        for name in wanted:
            if name not in available:
                raise BundleError(
                    f"subject {name!r} is not in the bundle {folder}; it has: "
                    f"{', '.join(available)}"
                )
        files = comps["appearance"]["subjects"]
        heads = {n: load_appearance(folder / files[n], map_location="cpu") for n in wanted}
        rig = load_rig_file(folder / comps["rig"]["path"]) if "rig" in comps else None
    except BundleError:
        raise
    except (OSError, KeyError, RuntimeError, ValueError, SafetensorError) as err:
        # ValueError and SafetensorError: a truncated or corrupt file
        raise BundleError(
            f"could not load the bundle {folder}: {type(err).__name__}: {err}; {REGENERATE_HINT}"
        ) from err
    for module in (net, extractor, *heads.values()):
        module.eval().requires_grad_(False).to(device)
    return Bundle(
        folder=folder,
        manifest=manifest,
        s2g=net,
        extractor=extractor,
        heads=heads,
        s2g_subjects=list(comps["s2g"]["subjects"]),
        s2g_templates=templates.to(device),
        regions={k: v.to(device) for k, v in regions.items()},
        rig=rig,
    )


# ------------------------------------------------------------------------------ rig files
def save_rig_file(rig: Any, path: str | os.PathLike) -> Path:
    """Write the parts of a `LinearRig` that ARKit fitting needs (no identity modes)."""
    from safetensors.torch import save_file

    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        "neutral": torch.from_numpy(rig.neutral),
        "faces": torch.from_numpy(rig.faces.astype(np.int64)),
        "uvs": torch.from_numpy(rig.uvs),
        "expression_deltas": torch.from_numpy(rig.expression_deltas),
    }
    for k, m in rig.regions.items():
        tensors[f"regions.{k}"] = torch.from_numpy(m.astype(np.uint8))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    meta = {
        "name": rig.name,
        "expression_names": list(rig.expression_names),
        "landmarks": rig.landmarks,
    }
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    return path


def load_rig_file(path: str | os.PathLike) -> Any:
    """Read a rig written by `save_rig_file` as a `LinearRig`."""
    from safetensors.torch import load_file

    from emotalk3d.geometry.rig import LinearRig

    path = Path(path)
    state = load_file(str(path))
    meta = json.loads(path.with_suffix(".json").read_text())
    regions = {k[8:]: v.numpy().astype(bool) for k, v in state.items() if k.startswith("regions.")}
    return LinearRig(
        neutral=state["neutral"].float().numpy(),
        faces=state["faces"].numpy(),
        uvs=state["uvs"].float().numpy(),
        expression_deltas=state["expression_deltas"].float().numpy(),
        expression_names=tuple(meta["expression_names"]),
        regions=regions,
        landmarks=meta.get("landmarks", {}),
        name=meta.get("name", "rig"),
    )


# ------------------------------------------------------------------------------ writing
@_quiet_hf()
def save_bundle(
    folder: str | os.PathLike,
    s2g: nn.Module,
    extractor: nn.Module,
    heads: dict[str, nn.Module],
    s2g_subjects: list[str] | None = None,
    s2g_templates: Tensor | None = None,  # [num_subjects, P, 3]
    regions: dict[str, Tensor] | None = None,  # name -> [P] bool
    rig: Any = None,
    render: dict[str, Any] | None = None,
    sources: dict[str, str] | None = None,
    storage_dtype: str = "float32",
) -> Path:
    """Write a bundle from plain modules, atomically (a temporary folder renamed into place).

    Args:
        folder: Output folder (replaced if it exists).
        s2g: An `S2GNet` holding its `HubertEncoder` (`audio_encoder`).
        extractor: An `EmotionExtractor`.
        heads: Subject name -> `GaussianHead`; the first is the default subject.
        s2g_subjects: S2GNet's training subjects in id order (default subject0, ...).
        s2g_templates: Their templates (default: the first head's template for each).
        regions: Region masks of the template points (e.g. lips, eyes).
        rig: Optional `LinearRig` of the subjects' topology, for ARKit export.
        render: Defaults of the render camera: distance, height, target, fov_deg, background.
        sources: Where the components came from (written to the manifest).
        storage_dtype: "float32", or "float16" to halve the files (the committed demo):
            every floating tensor is stored in half precision and loaded back as float32.

    Returns:
        The folder.
    """
    from safetensors.torch import save_file

    from emotalk3d.gaussians.model import save_appearance

    folder = Path(folder)
    if getattr(s2g, "audio_encoder", None) is None:
        raise ValueError("save_bundle needs an S2GNet built with its audio_encoder (HubertEncoder)")
    if not heads:
        raise ValueError("save_bundle needs at least one subject head (GaussianHead)")
    n_sub = int(s2g.num_subjects)
    names = list(s2g_subjects) if s2g_subjects else [f"subject{i}" for i in range(n_sub)]
    if len(names) != n_sub:
        raise ValueError(f"s2g_subjects has {len(names)} names but S2GNet has {n_sub} subjects")
    first = next(iter(heads.values()))
    if s2g_templates is None:
        s2g_templates = first.template[None].expand(n_sub, -1, -1)
    if tuple(s2g_templates.shape) != (n_sub, s2g.num_points, 3):
        raise ValueError(
            f"s2g_templates must be [{n_sub}, {s2g.num_points}, 3], got "
            f"{tuple(s2g_templates.shape)}"
        )
    for name, head in heads.items():
        if tuple(head.template.shape) != (s2g.num_points, 3):
            raise ValueError(
                f"subject {name!r} has {head.template.shape[0]} template points but "
                f"S2GNet predicts {s2g.num_points}; use heads of the same topology"
            )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        encoder = s2g.audio_encoder
        encoder.model.save_pretrained(str(tmp / "audio_encoder"))
        state = {
            k: v.detach().cpu().contiguous()
            for k, v in s2g.state_dict().items()
            if not k.startswith("audio_encoder.model.")
        }
        state["subject_templates"] = s2g_templates.detach().cpu().float().contiguous()
        for k, m in (regions or {}).items():
            state[f"regions.{k}"] = torch.as_tensor(m).detach().cpu().to(torch.uint8).contiguous()
        (tmp / "s2g").mkdir()
        save_file(state, str(tmp / "s2g" / "model.safetensors"))
        extractor.save_pretrained(tmp / "emotion")
        subject_files = {}
        for name, head in heads.items():
            rel = f"appearance/{_safe_name(name)}.safetensors"
            save_appearance(head, tmp / rel, extra={"subject": name})
            subject_files[name] = rel
        components: dict[str, Any] = {
            "audio_encoder": {
                "path": "audio_encoder",
                "layer": encoder.layer,
                "normalize": bool(encoder.normalize),
                "hidden_size": int(encoder.output_dim),
            },
            "s2g": {
                "path": "s2g/model.safetensors",
                "config": s2g_config(s2g),
                "subjects": names,
            },
            "emotion": {"path": "emotion", "prosody": bool(extractor.prosody)},
            "appearance": {
                "subjects": subject_files,
                "configs": {n: h.config for n, h in heads.items()},
            },
        }
        if rig is not None:
            if rig.num_vertices != s2g.num_points:
                raise ValueError(
                    f"rig has {rig.num_vertices} vertices, S2GNet predicts "
                    f"{s2g.num_points}; give the rig the data was made with"
                )
            save_rig_file(rig, tmp / "rig" / "rig.safetensors")
            components["rig"] = {"path": "rig/rig.safetensors", "name": rig.name}
        manifest = {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_VERSION,
            "emotalk3d_version": __version__,
            "fps": int(s2g.fps),
            "sample_rate": int(s2g.sample_rate),
            "emotions": list(EMOTIONS),
            "emotion_dim": EMOTION_DIM,
            "subjects": list(subject_files),
            "num_points": int(s2g.num_points),
            "render": {**default_render_settings(), **(render or {})},
            "components": components,
            "sources": sources or {},
            "storage_dtype": _check_storage_dtype(storage_dtype),
        }
        if storage_dtype != "float32":
            for file in sorted(tmp.rglob("*.safetensors")):
                cast_safetensors(file, getattr(torch, storage_dtype))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


STORAGE_DTYPES = ("float32", "float16", "bfloat16")


def _check_storage_dtype(name: str) -> str:
    if name not in STORAGE_DTYPES:
        raise ValueError(f"storage_dtype must be one of {', '.join(STORAGE_DTYPES)}, got {name!r}")
    return name


def cast_safetensors(path: str | os.PathLike, dtype: torch.dtype) -> Path:
    """Rewrite a .safetensors file in place (atomically) with its floating tensors in `dtype`.

    Integer and boolean tensors and the file's metadata are kept as they are.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = Path(path)
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iter)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    tmp = path.with_name(f".{path.name}.partial")
    save_file(state, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def default_render_settings() -> dict[str, Any]:
    """The render camera of the synthetic capture: frontal camera of the 11-camera arc."""
    from emotalk3d.render.cameras import DEFAULT_DISTANCE, DEFAULT_FOV_DEG, DEFAULT_TARGET

    return {
        "distance": DEFAULT_DISTANCE,
        "height": 0.0,
        "target": list(DEFAULT_TARGET),
        "fov_deg": DEFAULT_FOV_DEG,
        "background": [1.0, 1.0, 1.0],
    }


def _safe_name(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return keep or "subject"


def export_bundle(
    out: str | os.PathLike,
    s2g_ckpt: str | os.PathLike,
    emotion_ckpt: str | os.PathLike,
    subject_ckpts: dict[str, str | os.PathLike] | list[str | os.PathLike],
    rig: Any = None,
    render: dict[str, Any] | None = None,
    head_rank: int | None = None,
    storage_dtype: str = "float32",
) -> Path:
    """Build a bundle from the Lightning checkpoints of the three training runs.

    Args:
        out: The bundle folder to write.
        s2g_ckpt: `.ckpt` of an `S2GModule` run (`lightning fit -c configs/s2g.yaml`).
        emotion_ckpt: `.ckpt` of an `EmotionModule` run (`configs/emotion.yaml`).
        subject_ckpts: `.ckpt` files of `SubjectModule` runs (`configs/subject.yaml`), or
            appearance exports (`.safetensors` from `SubjectModule.export_appearance`); a dict
            names the subjects, a list names them after the S2G subjects (then subject0, ...).
        rig: Optional `LinearRig` (or "builtin:tiny"-style spec for `load_rig`) for ARKit export.
        render: Camera/background defaults (see `default_render_settings`).
        head_rank: Factorise S2GNet's output head to this rank (truncated SVD,
            `emotalk3d.geometry.s2gnet.compress_head`) to shrink the bundle; None keeps it.
        storage_dtype: "float32", or "float16" for half-size files (see `save_bundle`).

    Returns:
        The bundle folder.
    """
    from emotalk3d.gaussians.model import load_appearance
    from emotalk3d.geometry.s2gnet import compress_head
    from emotalk3d.training.emotion_module import EmotionModule
    from emotalk3d.training.s2g_module import S2GModule
    from emotalk3d.training.subject_module import SubjectModule

    def _load(cls, path):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        return cls.load_from_checkpoint(str(path), map_location="cpu", weights_only=True).eval()

    s2g_module = _load(S2GModule, s2g_ckpt)
    emotion_module = _load(EmotionModule, emotion_ckpt)
    s2g_names = s2g_module.subject_names
    if isinstance(subject_ckpts, dict):
        items = list(subject_ckpts.items())
    else:
        items = [
            (s2g_names[i] if i < len(s2g_names) else f"subject{i}", p)
            for i, p in enumerate(subject_ckpts)
        ]
    heads = {}
    background = None
    for name, path in items:
        if Path(path).suffix == ".safetensors":
            heads[name] = load_appearance(path)
        else:
            module = _load(SubjectModule, path)
            module.head.refresh_completion()
            heads[name] = module.head
            background = module.background.tolist()
    if isinstance(rig, str):
        from emotalk3d.geometry.rig import load_rig

        kind, _, size = rig.partition(":")
        rig = load_rig(kind, size or "small")
    regions = {
        k: getattr(s2g_module, k) for k in ("lips", "eyes") if bool(getattr(s2g_module, k).any())
    }
    templates = s2g_module.subject_templates
    if not bool(templates.abs().sum()):  # never set up with data: use the subject heads'
        templates = None
    render = dict(render or {})
    if background is not None:
        render.setdefault("background", background)
    net = s2g_module.net if head_rank is None else compress_head(s2g_module.net, head_rank)
    return save_bundle(
        out,
        net,
        emotion_module.extractor,
        heads,
        s2g_subjects=s2g_names,
        s2g_templates=templates,
        regions=regions,
        rig=rig,
        render=render,
        sources={
            "s2g": str(s2g_ckpt),
            "emotion": str(emotion_ckpt),
            **{f"appearance:{n}": str(p) for n, p in items},
            **({"s2g_head_rank": str(head_rank)} if head_rank is not None else {}),
        },
        storage_dtype=storage_dtype,
    )


def build_untrained_bundle(
    folder: str | os.PathLike,
    rig: str = "builtin:tiny",
    num_otf: int = 300,
    seed: int = 0,
    perturb: float = 0.0,
) -> Path:
    """Write a bundle of small, untrained components (tests, smoke runs; no data needed).

    Tiny HuBERT, tiny emotion extractor, a small S2GNet and a `GaussianHead` on the rig's
    neutral mesh. Untrained S2GNet outputs the template; `perturb` > 0 gives its zero-initialised
    head random weights of that scale (mm) so the geometry moves with the audio.
    """
    from emotalk3d.audio.emotion import EmotionExtractor
    from emotalk3d.audio.hubert import HubertEncoder
    from emotalk3d.gaussians.model import GaussianHead
    from emotalk3d.geometry.rig import load_rig
    from emotalk3d.geometry.s2gnet import S2GNet

    kind, _, size = rig.partition(":")
    face_rig = load_rig(kind, size or "tiny")
    torch.manual_seed(seed)
    encoder = HubertEncoder(size="tiny", freeze="none")
    s2g = S2GNet(
        num_points=face_rig.num_vertices,
        audio_encoder=encoder,
        hidden_size=32,
        emotion_embed_dim=8,
        subject_embed_dim=4,
    )
    if perturb > 0:
        with torch.no_grad():
            s2g.head.weight.normal_(0.0, perturb / math.sqrt(s2g.head.in_features))
    extractor = EmotionExtractor(size="tiny", head_dim=16)
    head = GaussianHead(
        face_rig.neutral,
        face_rig.faces,
        face_rig.uvs,
        num_otf=num_otf,
        sh_degree=1,
        g2anet_hidden=16,
        uv_freqs=2,
        seed=seed,
    )
    with torch.no_grad():  # colour by position so that views and motion are visible
        from emotalk3d.gaussians.canonical import rgb_to_sh0

        for part, pts in (
            ("face", head.canonical_face_means()),
            ("otf", head.canonical.otf["means"]),
        ):
            lo, hi = pts.min(0).values, pts.max(0).values
            rgb = 0.15 + 0.7 * (pts - lo) / (hi - lo).clamp(min=1e-6)
            getattr(head.canonical, part)["sh0"][:, 0] = rgb_to_sh0(rgb)
    regions = {
        k: torch.from_numpy(face_rig.regions[k]) for k in ("lips", "eyes") if k in face_rig.regions
    }
    return save_bundle(
        folder,
        s2g,
        extractor,
        {"subject0": head},
        regions=regions,
        rig=face_rig,
        sources={"note": f"untrained ({rig}, seed {seed})"},
    )
