"""Adapter for a folder of the real EmoTalk3D release: convert it to the dataset format v1.

The release's exact file format is not public, so this adapter is deliberately small and
isolated. It recognises the layout the paper describes (subject/sequence folders, 11 cameras
lettered A..K, per-camera image folders, audio, per-frame meshes of one topology, emotion labels
in sequence names) and converts what it can identify; where a file cannot be interpreted it
raises `DatasetFormatError` naming exactly that file and what was expected. docs/dataset.md
lists the assumptions.

Recognised layout (names case-insensitive):

    <src>/<subject>/
      calibration.json | cameras.json | calib.json   # per camera letter: K (3x3),
                                     # world_to_cam / w2c / extrinsic / RT (4x4 or 3x4),
                                     # optional width, height (else read from the images)
      template.obj | template.ply    # optional: faces and UVs for .npy meshes
      <emotion>_<level>_<sentence>/  # e.g. happy_strong_012, Angry_1_s03, neutral_005
        *.wav                        # any sample rate / channels (resampled to 16 kHz mono)
        images/<A..K>/<n>.png|.jpg   # or <A..K>/ directly in the sequence folder
        meshes/<n>.obj|.ply|.npy     # or mesh/, or one meshes.npy [T, P, 3]

Frame files are ordered by the number in their name and renumbered from 0.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotalk3d.constants import EMOTIONS, INTENSITY_LEVELS
from emotalk3d.data.format import (
    IMAGE_EXTENSIONS,
    Camera,
    DatasetFormatError,
    SequenceMeta,
    Template,
    write_calibration,
    write_sequence,
    write_template,
)

CAMERA_LETTERS = tuple("ABCDEFGHIJK")
CALIBRATION_NAMES = ("calibration.json", "cameras.json", "calib.json")
MESH_EXTENSIONS = (".obj", ".ply", ".npy")

# spellings seen in emotion datasets -> our emotion names
EMOTION_ALIASES: dict[str, str] = {
    "neutral": "neutral", "neu": "neutral",
    "angry": "angry", "anger": "angry", "ang": "angry",
    "contempt": "contempt", "con": "contempt",
    "disgusted": "disgusted", "disgust": "disgusted", "dis": "disgusted",
    "fear": "fear", "fearful": "fear", "fea": "fear",
    "happy": "happy", "happiness": "happy", "hap": "happy",
    "sad": "sad", "sadness": "sad",
    "surprised": "surprised", "surprise": "surprised", "sur": "surprised",
}  # fmt: skip
LEVEL_ALIASES: dict[str, float] = {
    "mild": INTENSITY_LEVELS["mild"], "low": 0.5, "weak": 0.5, "1": 0.5, "l1": 0.5,
    "strong": INTENSITY_LEVELS["strong"], "high": 1.0, "2": 1.0, "l2": 1.0,
}  # fmt: skip


@dataclass
class EmoTalk3DSequence:
    """One recognised sequence folder and the files that will be converted."""

    name: str
    path: Path
    emotion: str
    intensity: float
    sentence_id: str
    audio: Path
    meshes: list[Path]  # one file per frame, or a single [T, P, 3] .npy
    images: dict[str, list[Path]] = field(default_factory=dict)  # camera -> frame files


@dataclass
class EmoTalk3DSubject:
    """One recognised subject folder."""

    name: str
    path: Path
    calibration: Path
    sequences: list[EmoTalk3DSequence]
    template: Path | None = None


def parse_sequence_name(name: str) -> tuple[str, float, str]:
    """(emotion, intensity, sentence id) from a name such as `happy_strong_012`.

    Accepted: `<emotion>_<level>_<sentence>` or, for neutral, `neutral_<sentence>`; separators
    `_`, `-` or `.`; emotion and level spellings in EMOTION_ALIASES / LEVEL_ALIASES.

    Raises:
        DatasetFormatError: naming the folder and the expected pattern.
    """
    parts = [p for p in re.split(r"[_\-.]", name) if p]
    emotion = EMOTION_ALIASES.get(parts[0].lower()) if parts else None
    if emotion is None or len(parts) < 2:
        raise DatasetFormatError(
            f"sequence folder {name!r}: expected a name <emotion>_<level>_<sentence> with an "
            f"emotion among {', '.join(EMOTIONS)} (e.g. happy_strong_012 or neutral_012)"
        )
    if emotion == "neutral":
        rest = parts[2:] if len(parts) > 2 and parts[1].lower() in LEVEL_ALIASES else parts[1:]
        return emotion, 0.0, "_".join(rest)
    level = LEVEL_ALIASES.get(parts[1].lower())
    if level is None or len(parts) < 3:
        raise DatasetFormatError(
            f"sequence folder {name!r}: expected <emotion>_<level>_<sentence> with a level "
            f"among {', '.join(LEVEL_ALIASES)} (e.g. {emotion}_strong_012)"
        )
    return emotion, level, "_".join(parts[2:])


def _frame_number(path: Path) -> int:
    digits = re.findall(r"\d+", path.stem)
    if not digits:
        raise DatasetFormatError(f"{path}: expected a frame number in the file name")
    return int(digits[-1])


def _numbered(files: list[Path]) -> list[Path]:
    files = sorted(files, key=_frame_number)
    nums = [_frame_number(f) for f in files]
    if len(set(nums)) != len(nums):
        raise DatasetFormatError(f"{files[0].parent}: two files share a frame number")
    return files


def _child(folder: Path, names: tuple[str, ...]) -> Path | None:
    lower = {p.name.lower(): p for p in folder.iterdir()}
    for n in names:
        if n.lower() in lower:
            return lower[n.lower()]
    return None


def _scan_sequence(path: Path) -> EmoTalk3DSequence:
    emotion, intensity, sentence = parse_sequence_name(path.name)
    wavs = sorted(p for p in path.iterdir() if p.suffix.lower() == ".wav")
    if len(wavs) != 1:
        raise DatasetFormatError(
            f"sequence folder {path}: expected exactly one .wav file, found {len(wavs)}"
        )
    single = _child(path, ("meshes.npy",))
    mesh_dir = _child(path, ("meshes", "mesh"))
    if single is not None:
        meshes = [single]
    elif mesh_dir is not None and mesh_dir.is_dir():
        meshes = _numbered([p for p in mesh_dir.iterdir() if p.suffix.lower() in MESH_EXTENSIONS])
        if not meshes:
            raise DatasetFormatError(f"{mesh_dir}: expected per-frame .obj, .ply or .npy meshes")
    else:
        raise DatasetFormatError(
            f"sequence folder {path}: expected per-frame meshes in meshes/ (or mesh/), or a "
            f"meshes.npy [T, P, 3]"
        )
    image_root = _child(path, ("images", "image", "imgs")) or path
    images = {}
    for cam_dir in sorted(p for p in image_root.iterdir() if p.is_dir()):
        if cam_dir.name.upper() not in CAMERA_LETTERS:
            continue
        files = [p for p in cam_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
        if files:
            images[cam_dir.name.upper()] = _numbered(files)
    return EmoTalk3DSequence(path.name, path, emotion, intensity, sentence, wavs[0], meshes, images)


def scan_emotalk3d_subject(path: str | Path) -> EmoTalk3DSubject:
    """Recognise one subject folder of the release (reads names only, no data).

    Raises:
        DatasetFormatError: naming the first file or folder that does not fit the layout.
    """
    path = Path(path)
    if not path.is_dir():
        raise DatasetFormatError(f"EmoTalk3D subject folder {path} does not exist")
    calib = _child(path, CALIBRATION_NAMES)
    if calib is None:
        raise DatasetFormatError(
            f"{path}: expected a camera calibration file ({', '.join(CALIBRATION_NAMES)}) "
            f"with K and world_to_cam per camera letter A..K"
        )
    template = _child(path, ("template.obj", "template.ply"))
    seq_root = _child(path, ("sequences",)) or path
    seqs = []
    for p in sorted(seq_root.iterdir()):
        if p.is_dir() and not p.name.startswith(".") and p.name.lower() != "sequences":
            seqs.append(_scan_sequence(p))
    if not seqs:
        raise DatasetFormatError(f"{path}: no sequence folders (<emotion>_<level>_<sentence>)")
    return EmoTalk3DSubject(path.name, path, calib, seqs, template)


# --------------------------------------------------------------------------------------------
# files


def _matrix4(value, what: str, path: Path) -> np.ndarray:  # [4, 4]
    m = np.asarray(value, dtype=np.float64)
    if m.shape == (3, 4):
        m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
    if m.shape != (4, 4):
        raise DatasetFormatError(f"{path}: {what} must be a 4x4 or 3x4 matrix, got {m.shape}")
    return m


def read_emotalk3d_calibration(path: Path, image_sizes: dict[str, tuple[int, int]]) -> list[Camera]:
    """Cameras from a calibration JSON keyed by camera letter (or a list with "id"/"name").

    Each camera needs K (or intrinsic) and world_to_cam (or w2c, extrinsic, RT; 4x4 or 3x4).
    A camera given only as cam_to_world (or c2w) is inverted. Width and height default to
    `image_sizes[letter]` = (width, height) of the first image.
    """
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetFormatError(f"{path}: calibration is not readable JSON ({err})") from err
    if isinstance(obj, dict) and "cameras" in obj:
        obj = obj["cameras"]
    if isinstance(obj, list):
        obj = {str(c.get("id", c.get("name", i))): c for i, c in enumerate(obj)}
    if not isinstance(obj, dict) or not obj:
        raise DatasetFormatError(f"{path}: expected a JSON object keyed by camera letter A..K")
    cams = []
    for key, c in obj.items():
        letter = str(key).upper()
        if letter not in CAMERA_LETTERS or not isinstance(c, dict):
            raise DatasetFormatError(
                f"{path}: camera {key!r} is not one of the letters A..K with an object value"
            )
        K = c.get("K", c.get("intrinsic"))
        w2c = next((c[k] for k in ("world_to_cam", "w2c", "extrinsic", "RT") if k in c), None)
        c2w = c.get("cam_to_world", c.get("c2w"))
        if K is None or (w2c is None and c2w is None):
            raise DatasetFormatError(
                f"{path}: camera {key!r} needs K (or intrinsic) and world_to_cam (or w2c, "
                f"extrinsic, RT, cam_to_world, c2w); it has keys {sorted(c)}"
            )
        if w2c is not None:
            w2c = _matrix4(w2c, f"camera {key!r} world_to_cam", path)
        else:
            w2c = np.linalg.inv(_matrix4(c2w, f"camera {key!r} cam_to_world", path))
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3):
            raise DatasetFormatError(f"{path}: camera {key!r} K must be 3x3, got {K.shape}")
        if "width" in c and "height" in c:
            width, height = int(c["width"]), int(c["height"])
        elif letter in image_sizes:
            width, height = image_sizes[letter]
        else:
            raise DatasetFormatError(
                f"{path}: camera {key!r} has no width/height and no images to read them from"
            )
        cams.append(Camera(letter, K, w2c, width, height))
    return sorted(cams, key=lambda cam: cam.id)


def read_obj(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(vertices [P, 3], triangles [F, 3], per-vertex uvs [P, 2] or None) of a Wavefront OBJ.

    Polygons are fan-triangulated; a vertex's UV is the first `vt` it is used with.
    """
    verts, uvs_raw, faces, face_uv = [], [], [], []
    try:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "v":
                if len(parts) < 4:
                    raise ValueError(f"vertex line {line!r} has fewer than 3 coordinates")
                verts.append([float(x) for x in parts[1:4]])
            elif parts[0] == "vt":
                uvs_raw.append([float(x) for x in parts[1:3]])
            elif parts[0] == "f":
                idx = [p.split("/") for p in parts[1:]]
                vi = [int(i[0]) for i in idx]
                ti = [int(i[1]) if len(i) > 1 and i[1] else 0 for i in idx]
                for k in range(1, len(vi) - 1):
                    faces.append([vi[0], vi[k], vi[k + 1]])
                    face_uv.append([ti[0], ti[k], ti[k + 1]])
    except (OSError, ValueError, IndexError) as err:
        raise DatasetFormatError(f"{path}: not a readable Wavefront OBJ mesh ({err})") from err
    if not verts:
        raise DatasetFormatError(f"{path}: expected `v x y z` vertex lines, found none")
    v = np.asarray(verts, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    f = np.where(f < 0, f + len(v), f - 1)  # OBJ is 1-based; negative indices count back
    uvs = None
    if uvs_raw and faces:
        t = np.asarray(face_uv, dtype=np.int64).reshape(-1, 3)
        t = np.where(t < 0, t + len(uvs_raw), t - 1)
        uvs = np.zeros((len(v), 2))
        vi, ti = f.ravel()[::-1], t.ravel()[::-1]  # reversed: the first use of a vertex wins
        keep = ti >= 0
        uvs[vi[keep]] = np.asarray(uvs_raw)[ti[keep]]
    return v, f, uvs


def read_ply(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(vertices [P, 3], triangles [F, 3], uvs [P, 2] or None) of a PLY mesh (plyfile)."""
    from plyfile import PlyData

    try:
        ply = PlyData.read(str(path))
        vert = ply["vertex"]
        v = np.stack([vert["x"], vert["y"], vert["z"]], axis=1).astype(np.float64)
    except Exception as err:
        raise DatasetFormatError(f"{path}: not a readable PLY mesh with x/y/z ({err})") from err
    f = np.zeros((0, 3), dtype=np.int64)
    if "face" in ply:
        faces = [np.asarray(x) for x in ply["face"].data[ply["face"].properties[0].name]]
        tris = [[p[0], p[k], p[k + 1]] for p in faces for k in range(1, len(p) - 1)]
        f = np.asarray(tris, dtype=np.int64).reshape(-1, 3)
    names = vert.data.dtype.names
    uvs = None
    for a, b in (("s", "t"), ("u", "v"), ("texture_u", "texture_v")):
        if a in names and b in names:
            uvs = np.stack([vert[a], vert[b]], axis=1).astype(np.float64)
            break
    return v, f, uvs


def read_mesh_file(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(vertices [P, 3], faces [F, 3] or None, uvs [P, 2] or None) of .obj/.ply/.npy [P, 3]."""
    ext = path.suffix.lower()
    if ext == ".obj":
        return read_obj(path)
    if ext == ".ply":
        return read_ply(path)
    if ext == ".npy":
        try:
            v = np.load(path, allow_pickle=False)
        except Exception as err:
            raise DatasetFormatError(f"{path}: not a readable .npy ({err})") from err
        if v.ndim != 2 or v.shape[1] != 3:
            raise DatasetFormatError(f"{path}: expected a [P, 3] vertex array, got {v.shape}")
        return v.astype(np.float64), None, None
    raise DatasetFormatError(f"{path}: unknown mesh type; expected .obj, .ply or .npy")


def _load_sequence_meshes(seq: EmoTalk3DSequence) -> np.ndarray:  # [T, P, 3]
    if len(seq.meshes) == 1 and seq.meshes[0].name.lower() == "meshes.npy":
        m = np.load(seq.meshes[0], allow_pickle=False)
        if m.ndim != 3 or m.shape[2] != 3:
            raise DatasetFormatError(f"{seq.meshes[0]}: expected [T, P, 3], got {m.shape}")
        return m.astype(np.float64)
    frames = []
    for path in seq.meshes:
        v = read_mesh_file(path)[0]
        if frames and v.shape != frames[0].shape:
            raise DatasetFormatError(
                f"{path}: has {len(v)} vertices but {seq.meshes[0].name} has "
                f"{len(frames[0])}; every mesh of a subject must share one topology"
            )
        frames.append(v)
    return np.stack(frames)


def _template_from(subject: EmoTalk3DSubject, scale: float) -> Template:
    """The neutral template: vertices from the first neutral sequence's first frame (else the
    first sequence's), faces and UVs from template.obj/.ply or the first per-frame mesh."""
    neutral = [s for s in subject.sequences if s.emotion == "neutral"]
    first = (neutral or subject.sequences)[0]
    verts = _load_sequence_meshes(first)[0] * scale
    topo_file = subject.template or first.meshes[0]
    _, faces, uvs = read_mesh_file(topo_file)
    if faces is None or len(faces) == 0:
        raise DatasetFormatError(
            f"{topo_file}: holds no faces; add template.obj or template.ply (the mesh topology "
            f"with faces and UVs) to {subject.path}"
        )
    if faces.max() >= len(verts):
        raise DatasetFormatError(
            f"{topo_file}: faces index {faces.max() + 1} vertices but the meshes have {len(verts)}"
        )
    if uvs is None:
        uvs = np.zeros((len(verts), 2))  # the release's UVs are unknown: documented gap
    return Template(
        vertices=verts.astype(np.float32),
        faces=faces.astype(np.int32),
        uvs=np.clip(uvs, 0.0, 1.0).astype(np.float32),
        regions={},
    )


def convert_emotalk3d_subject(
    src: str | Path,
    dst_root: str | Path,
    fps: float = 25.0,
    scale: float | None = None,
    copy_images: bool = True,
) -> Path:
    """Convert one subject folder of the release into `<dst_root>/<subject>/` (format v1).

    Args:
        src: the release's subject folder.
        dst_root: the output dataset folder.
        fps: frame rate of the release's meshes and images (not recorded in its files).
        scale: factor from the release's units to millimetres; None guesses from the median
            camera distance (metres when below 10, centimetres below 100, else millimetres).
        copy_images: copy image files (True) or hard-link them where possible (False).

    Returns:
        The subject folder written. Region masks are left empty (the release's are unknown);
        `emotalk3d data check` reports them until they are added.
    """
    subject = scan_emotalk3d_subject(src)
    sizes = {}
    for seq in subject.sequences:
        for cam, files in seq.images.items():
            if cam not in sizes:
                from PIL import Image

                try:
                    with Image.open(files[0]) as im:
                        sizes[cam] = im.size
                except Exception as err:
                    raise DatasetFormatError(f"{files[0]}: unreadable image ({err})") from err
    cameras = read_emotalk3d_calibration(subject.calibration, sizes)
    if scale is None:
        dist = float(np.median([np.linalg.norm(c.world_to_cam[:3, 3]) for c in cameras]))
        scale = 1000.0 if dist < 10 else 10.0 if dist < 100 else 1.0
    cameras = [
        Camera(c.id, c.K, np.vstack([np.hstack([c.world_to_cam[:3, :3],
                                                 c.world_to_cam[:3, 3:] * scale]),
                                      [0.0, 0.0, 0.0, 1.0]]), c.width, c.height)
        for c in cameras
    ]  # fmt: skip
    out = Path(dst_root) / subject.name
    write_calibration(out, cameras)
    template = _template_from(subject, scale)
    write_template(out, template)
    for seq in subject.sequences:
        _convert_sequence(seq, out, cameras, template, fps, scale, copy_images)
    return out


def _read_any_audio(path: Path) -> tuple[np.ndarray, int]:  # ([S] float32, rate)
    import soundfile as sf

    try:
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as err:
        raise DatasetFormatError(f"{path}: not a readable audio file ({err})") from err
    return audio.mean(axis=1), int(sr)


def _convert_sequence(
    seq: EmoTalk3DSequence,
    out: Path,
    cameras: list[Camera],
    template: Template,
    fps: float,
    scale: float,
    copy_images: bool,
) -> None:
    meshes = _load_sequence_meshes(seq) * scale
    T, P = meshes.shape[:2]
    if P != len(template.vertices):
        raise DatasetFormatError(
            f"{seq.meshes[0]}: has {P} vertices but the subject's template has "
            f"{len(template.vertices)}; every mesh of a subject must share one topology"
        )
    audio, sr = _read_any_audio(seq.audio)
    want = int(round(T / fps * sr))  # the format's audio spans exactly the mesh frames
    adjusted = want - len(audio)
    audio = np.pad(audio, (0, max(adjusted, 0)))[:want]
    for cam, files in seq.images.items():
        if len(files) != T:
            raise DatasetFormatError(
                f"{files[0].parent}: has {len(files)} images but the sequence has {T} meshes; "
                f"expected one image per mesh frame"
            )
        if cam not in {c.id for c in cameras}:
            raise DatasetFormatError(f"{files[0].parent}: camera {cam} is not in the calibration")
    meta = SequenceMeta(
        emotion=seq.emotion,
        intensity=seq.intensity,
        sentence="",
        fps=fps,
        num_frames=T,
        sentence_id=seq.sentence_id or None,
        split=None,
        extra={"source": str(seq.path), "audio_padded_samples": adjusted},
    )
    qdir = write_sequence(out, seq.name, meta, meshes.astype(np.float32), audio, sample_rate=sr)
    for cam, files in seq.images.items():
        cam_dir = qdir / "images" / cam
        cam_dir.mkdir(parents=True, exist_ok=True)
        for t, src in enumerate(files):
            ext = ".jpg" if src.suffix.lower() in (".jpg", ".jpeg") else ".png"
            dst = cam_dir / f"{t:05d}{ext}"
            if not copy_images:
                try:
                    dst.unlink(missing_ok=True)
                    dst.hardlink_to(src)
                    continue
                except OSError:
                    pass
            shutil.copyfile(src, dst)


def convert_emotalk3d(src: str | Path, dst: str | Path, **kwargs) -> list[Path]:
    """Convert a release folder (one subject folder, or a folder of subject folders) to the
    dataset format v1 under `dst`; keyword arguments go to `convert_emotalk3d_subject`."""
    src = Path(src)
    if not src.is_dir():
        raise DatasetFormatError(f"EmoTalk3D folder {src} does not exist")
    if _child(src, CALIBRATION_NAMES) is not None:
        return [convert_emotalk3d_subject(src, dst, **kwargs)]
    subjects = sorted(p for p in src.iterdir() if p.is_dir() and _child(p, CALIBRATION_NAMES))
    if not subjects:
        raise DatasetFormatError(
            f"{src}: no subject folders with a calibration file ({', '.join(CALIBRATION_NAMES)})"
        )
    return [convert_emotalk3d_subject(p, dst, **kwargs) for p in subjects]


def read_emotalk3d_subject(src: str | Path, cache: str | Path):
    """Convert a release subject into `cache` (once) and open it with the format reader.

    Returns:
        SubjectInfo of the converted subject.
    """
    from emotalk3d.data.format import read_subject

    subject_dir = Path(cache) / Path(src).name
    if not (subject_dir / "calibration.json").is_file():
        convert_emotalk3d_subject(src, cache)
    return read_subject(subject_dir)
