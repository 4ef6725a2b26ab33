"""TalkingHead, the inference bundle and the pure helpers of emotalk3d.inference.pipeline."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from emotalk3d.constants import EMOTION_DIM, EMOTIONS
from emotalk3d.inference.checkpoint import BundleError, load_bundle, read_manifest
from emotalk3d.inference.pipeline import (
    TalkingHead,
    crossfade,
    emotion_label,
    num_output_frames,
    parse_emotion,
    plan_windows,
    rechunk,
    resample_stream,
)

# ------------------------------------------------------------------------------ emotion specs


def test_parse_emotion_names_intensity_and_mixes():
    assert parse_emotion("angry") == {"angry": 1.0}
    assert parse_emotion(" Angry ", 0.5) == {"angry": 0.5}
    assert parse_emotion("neutral", 1.0) == {"neutral": 0.0}
    assert parse_emotion("auto") is None
    assert parse_emotion("happy:0.7,surprised:0.3") == {"happy": 0.7, "surprised": 0.3}
    assert parse_emotion("happy:0.7, surprised:.3", 0.5) == pytest.approx(
        {"happy": 0.35, "surprised": 0.15}
    )
    assert emotion_label({"angry": 1.0}) == "angry"
    assert emotion_label({"angry": 0.5}) == "angry50"
    assert emotion_label({"happy": 0.7, "surprised": 0.3}) == "happy70-surprised30"
    assert emotion_label(None) == "auto"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("furious", "unknown emotion 'furious'; expected one of: neutral, angry"),
        ("happy:", "is not NAME or NAME:WEIGHT"),
        ("happy:abc", "is not NAME or NAME:WEIGHT"),
        ("happy:0.7,,sad:0.3", "is not NAME or NAME:WEIGHT"),
        ("happy:1.5", "must lie in [0, 1]"),
        ("happy:0.5,happy:0.2", "appears twice"),
        ("happy:0.5,sad", "give every emotion a weight"),
        ("auto:0.5", "cannot be mixed"),
        ("", "a name, 'auto' or a mix"),
    ],
)
def test_parse_emotion_errors(spec, message):
    with pytest.raises(ValueError) as err:
        parse_emotion(spec)
    assert message in str(err.value)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_parse_emotion_rejects_bad_intensity(bad):
    with pytest.raises(ValueError, match=r"intensity must lie in \[0, 1\]"):
        parse_emotion("angry", bad)


def test_resolve_emotion_vectors(talking_head):
    mix = talking_head.resolve_emotion("happy:0.7,surprised:0.3")
    assert mix.vector.shape == (EMOTION_DIM,)
    assert mix.vector[EMOTIONS.index("happy")] == pytest.approx(0.7)
    assert mix.vector[EMOTIONS.index("surprised")] == pytest.approx(0.3)
    assert mix.vector[-1] == pytest.approx(0.7)
    assert float(talking_head.resolve_emotion("neutral").vector.abs().sum()) == 0.0


def test_auto_emotion_is_decided_and_reported(talking_head, speech):
    choice = talking_head.resolve_emotion("auto", torch.from_numpy(speech))
    assert choice.source == "auto" and choice.label == "auto"
    assert set(choice.probabilities) == set(EMOTIONS)
    assert sum(choice.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    (name,) = choice.weights
    assert name == max(choice.probabilities, key=choice.probabilities.get)
    assert name in choice.describe()
    forced = talking_head.resolve_emotion("auto", torch.from_numpy(speech), intensity=0.25)
    assert forced.weights[name] == (0.0 if name == "neutral" else 0.25)


# ------------------------------------------------------------------------------ chunking maths


def test_num_output_frames_is_ceil_of_duration_times_fps():
    assert num_output_frames(16000, 25) == 25
    assert num_output_frames(16001, 25) == 26
    assert num_output_frames(14117, 25) == math.ceil(14117 / 16000 * 25)
    assert num_output_frames(16000, 29.97) == 30


@pytest.mark.parametrize(("n", "window", "overlap"), [(1, 5, 2), (5, 5, 2), (23, 10, 3), (7, 2, 1)])
def test_plan_windows_cover_every_frame_with_exact_overlaps(n, window, overlap):
    plan = plan_windows(n, window, overlap)
    assert plan[0][0] == 0 and plan[-1][1] == n
    for (a0, b0), (a1, b1) in zip(plan, plan[1:], strict=False):
        assert b0 - a1 == overlap and b0 - a0 == window
        assert a1 > a0 and b1 > b0


def test_crossfade_ramps_from_previous_to_following():
    prev, nxt = torch.zeros(4, 2), torch.ones(4, 2)
    out = crossfade(prev, nxt)
    assert torch.allclose(out[:, 0], torch.tensor([0.125, 0.375, 0.625, 0.875]))


def test_resample_stream_is_linear_in_time_and_streams():
    x = torch.arange(10, dtype=torch.float32)[:, None]  # value = frame index at 25 fps
    chunks = iter([x[:3], x[3:7], x[7:]])
    out = torch.cat(list(resample_stream(chunks, 10, 25, 50, 20)))
    assert out.shape == (20, 1)
    expect = torch.clamp(torch.arange(20) * 0.5, max=9.0)
    assert torch.allclose(out[:, 0], expect)
    same = torch.cat(list(resample_stream(iter([x[:4], x[4:]]), 10, 25, 25, 10)))
    assert torch.equal(same, x)
    assert [c.shape[0] for c in rechunk(iter([x[:3], x[3:7], x[7:]]), 4)] == [4, 4, 2]


# ------------------------------------------------------------------------------ the head


def test_geometry_shape_and_template_for_untrained_head(talking_head, speech, tiny_bundle):
    pts = talking_head.geometry(speech, "angry", sample_rate=16000)
    T = num_output_frames(len(speech), 25)
    assert pts.shape == (T, talking_head.template.shape[0], 3)
    assert torch.isfinite(pts).all()
    # the untrained (zero-head) S2GNet reproduces the template exactly
    plain = TalkingHead(load_bundle(tiny_bundle), backend="torch")
    with torch.no_grad():
        plain.s2g.head.weight.zero_()
    assert torch.equal(plain.geometry(speech, "angry", 16000), plain.template.expand(T, -1, -1))


def test_chunked_geometry_has_no_seam(tiny_bundle, speech):
    bundle = load_bundle(tiny_bundle)
    whole = TalkingHead(bundle, backend="torch")
    chunked = TalkingHead(bundle, backend="torch", window_seconds=0.4, overlap_seconds=0.16)
    a = whole.geometry(speech, "sad", 16000)
    b = chunked.geometry(speech, "sad", 16000)
    assert a.shape == b.shape
    # the first window's frames before the overlap are that window's own prediction
    first = chunked.s2g(
        torch.from_numpy(speech[: 10 * 640])[None],
        chunked.template[None],
        chunked.resolve_emotion("sad").vector[None],
        torch.tensor([0]),
        num_frames=10,
    )[0]
    assert torch.allclose(b[:6], first[:6], atol=1e-5)
    # overlap frames are cross-faded: no jump larger than the clip's own motion
    step_b = (b[1:] - b[:-1]).norm(dim=-1).max(dim=-1).values
    step_a = (a[1:] - a[:-1]).norm(dim=-1).max(dim=-1).values
    assert float(step_b.max()) <= 2.0 * float(step_a.max()) + 1e-3


def test_frames_view30_matches_direct_render_and_differs_from_view0(talking_head, speech):
    from emotalk3d.render.cameras import intrinsics_from_fov, orbit_camera
    from emotalk3d.render.rasterize import render_gaussians

    fps = 4
    batches = list(talking_head(speech, "happy", [0.0, 30.0], sample_rate=16000, fps=fps,
                                resolution=64, batch_size=2))  # fmt: skip
    images = np.concatenate([b.images for b in batches])
    T = num_output_frames(len(speech), fps)
    assert images.shape == (T, 2, 64, 64, 3) and images.dtype == np.uint8
    assert [b.start for b in batches] == list(range(0, T, 2))
    view0, view30 = images[:, 0].astype(int), images[:, 1].astype(int)
    assert np.abs(view0 - view30).mean() > 2.0

    t = T // 2
    pts = talking_head.geometry(speech, "happy", 16000, fps=fps)[t : t + 1]
    g = talking_head.gaussians(pts, "happy")
    rs = talking_head.render_settings
    vm = torch.tensor(orbit_camera(30.0, 0.0, rs["distance"], rs["target"]), dtype=torch.float32)
    K = torch.tensor(intrinsics_from_fov(rs["fov_deg"], 64, 64), dtype=torch.float32)
    out = render_gaussians(g.means[0], g.quats[0], g.scales[0], g.opacities[0], g.sh[0],
                           vm[None], K[None], 64, 64, backend="torch",
                           background=torch.ones(3), render_depth=False)  # fmt: skip
    direct = (out.image[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy().astype(int)
    assert np.abs(direct - view30[t]).max() <= 1


def test_orbit_cameras_move_per_frame(talking_head):
    cams = talking_head.cameras("orbit", 32, num_frames=20)
    assert cams.viewmats.shape == (20, 1, 4, 4) and cams.names == ["orbit"]
    assert not torch.allclose(cams.at(0, 1)[0], cams.at(5, 6)[0])
    with pytest.raises(ValueError, match="yaw degrees or 'orbit'"):
        talking_head.cameras("sideways", 32)


def test_arkit_weights_of_geometry(talking_head, speech):
    pts = talking_head.geometry(speech, "neutral", 16000, fps=5)
    assert talking_head.arkit_weights(pts).shape == (pts.shape[0], 52)
    # The template itself (no motion) has no expression.
    still = talking_head.template[None].repeat(2, 1, 1)
    np.testing.assert_allclose(talking_head.arkit_weights(still), 0.0, atol=1e-4)
    # Known ARKit weights, applied through the rig's shapes, come back.
    from emotalk3d.constants import ARKIT_NAMES
    from emotalk3d.geometry.arkit import arkit_to_rig_weights

    rig = talking_head.bundle.rig
    known = np.zeros((1, 52), np.float32)
    for name, value in (("jawOpen", 0.6), ("browInnerUp", 0.3), ("eyeBlink_L", 0.8)):
        known[0, ARKIT_NAMES.index(name)] = value
    deltas = torch.as_tensor(rig.expression_deltas, dtype=torch.float32)  # [K, P, 3]
    w_rig = torch.as_tensor(arkit_to_rig_weights(rig, known))  # [1, K]
    moved = talking_head.template.cpu()[None] + torch.einsum("tk,kpc->tpc", w_rig, deltas)
    np.testing.assert_allclose(talking_head.arkit_weights(moved), known, atol=1e-3)


# ------------------------------------------------------------------------------ the bundle


def test_bundle_manifest_and_no_lightning_on_load(tiny_bundle):
    manifest = read_manifest(tiny_bundle)
    assert manifest["format_version"] == 1 and manifest["fps"] == 25
    assert set(manifest["components"]) >= {"audio_encoder", "s2g", "emotion", "appearance"}
    code = (
        "import sys\n"
        "import emotalk3d.inference.pipeline as p\n"
        f"h = p.TalkingHead.from_checkpoints({str(tiny_bundle)!r})\n"
        "assert 'lightning' not in sys.modules, [m for m in sys.modules if 'lightning' in m]\n"
        "print('ok', h.subject)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "ok subject0" in res.stdout


def test_incompatible_or_incomplete_bundle_errors(tiny_bundle, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny_bundle, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format_version"] = 0
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError) as err:
        TalkingHead.from_checkpoints(old)
    msg = str(err.value)
    assert str(old) in msg and "format version 0" in msg
    assert "lightning fit -c" in msg and "emotalk3d bundle" in msg

    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    shutil.rmtree(broken / "emotion")
    with pytest.raises(BundleError, match="component 'emotion' needs"):
        read_manifest(broken)
    with pytest.raises(BundleError, match="scripts/build_demo.sh"):
        read_manifest(tmp_path / "nowhere")
    with pytest.raises(BundleError, match="no manifest.json"):
        read_manifest(tmp_path)

    truncated = tmp_path / "truncated"  # a copy cut short: named, never a traceback
    shutil.copytree(tiny_bundle, truncated)
    weights = truncated / "s2g" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(BundleError, match=r"could not load the bundle .*truncated.*build_demo"):
        TalkingHead.from_checkpoints(truncated)


def test_export_bundle_from_lightning_checkpoints(tmp_path, speech):
    import lightning

    from emotalk3d.geometry.rig import load_rig
    from emotalk3d.inference.checkpoint import export_bundle
    from emotalk3d.training.emotion_module import EmotionModule
    from emotalk3d.training.s2g_module import S2GModule
    from emotalk3d.training.subject_module import SubjectModule

    rig = load_rig("builtin", "tiny")
    P = rig.num_vertices
    s2g = S2GModule(num_points=P, subject_names=["ann"], hubert_size="tiny", hidden_size=16,
                    emotion_embed_dim=4, subject_embed_dim=4, hubert_layer="weighted",
                    lookahead=2)  # fmt: skip
    s2g.subject_templates.copy_(torch.from_numpy(rig.neutral)[None])
    with torch.no_grad():  # a trained-like head and layer mix: the geometry follows the audio
        torch.nn.init.normal_(s2g.net.head.weight, std=0.05)
        s2g.net.audio_encoder.layer_weights.copy_(torch.tensor([2.0, -1.0, 0.5]))
    emo = EmotionModule(size="tiny", head_dim=8)
    subj = SubjectModule(num_otf=50, g2anet_hidden=8, background=[0.0, 0.0, 0.0])
    subj._build_head(rig.neutral, rig.faces, rig.uvs)
    paths = {}
    for name, module in (("s2g", s2g), ("emotion", emo), ("subject", subj)):
        ckpt = {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": lightning.__version__,
        }
        if name == "subject":
            ckpt["gaussian_counts"] = {"face": subj.head.num_face, "otf": subj.head.num_otf}
        paths[name] = tmp_path / f"{name}.ckpt"
        torch.save(ckpt, paths[name])
    out = export_bundle(tmp_path / "bundle", paths["s2g"], paths["emotion"], [paths["subject"]],
                        rig="builtin:tiny")  # fmt: skip
    head = TalkingHead.from_checkpoints(out, backend="torch")
    assert head.subjects == ["ann"] and head.style_id == 0
    assert head.render_settings["background"] == [0.0, 0.0, 0.0]
    assert torch.equal(head.head.canonical.otf["means"], subj.head.canonical.otf["means"])
    s2g.eval()  # HuBERT's dropout off, as in the bundle
    with torch.no_grad():
        wav = torch.from_numpy(speech)[None]
        e = head.resolve_emotion("angry").vector[None]
        ref = s2g.net(wav, s2g.subject_templates, e, torch.tensor([0]))[0]
    assert head.s2g.lookahead == 2 and head.s2g.audio_encoder.layer == "weighted"
    assert (ref - s2g.subject_templates[0]).abs().max() > 0.1  # it moves
    assert torch.allclose(head.geometry(speech, "angry", 16000), ref, atol=1e-4)
