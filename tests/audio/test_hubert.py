"""HubertEncoder against transformers' HubertModel: same outputs, loading, freezing, windows."""

from __future__ import annotations

import huggingface_hub.constants
import pytest
import torch
from transformers import HubertModel

from emotalk3d.audio.hubert import (
    HubertEncoder,
    PretrainedNotAvailableError,
    hubert_config,
    hubert_num_frames,
    normalize_audio,
)
from emotalk3d.audio.load import num_motion_frames


def _audio(batch: int = 2, seconds: float = 1.0, seed: int = 0) -> torch.Tensor:  # [B, S]
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, int(seconds * 16000), generator=g) + 0.05


def test_wrapper_equals_hubert_model_with_same_weights():
    torch.manual_seed(0)
    enc = HubertEncoder(size="tiny").eval()
    ref = HubertModel(hubert_config("tiny")).eval()
    ref.load_state_dict(enc.model.state_dict())
    audio = _audio()
    with torch.no_grad():
        got = enc(audio)
        want = ref(normalize_audio(audio)).last_hidden_state
    assert got.shape == (2, hubert_num_frames(16000), 32) == (2, 49, 32)
    assert torch.equal(got, want)


def test_normalisation_matches_feature_extractor_maths():
    audio = _audio(1, 0.5)
    x = audio[0].double().numpy()
    want = (x - x.mean()) / (x.var() + 1e-7) ** 0.5
    got = normalize_audio(audio)[0].double().numpy()
    assert abs(got - want).max() < 1e-5
    # with lengths: statistics over the valid part only, padding zeroed
    padded = torch.cat([audio, torch.full((1, 100), 3.0)], dim=1)
    got_pad = normalize_audio(padded, torch.tensor([audio.shape[1]]))
    assert torch.allclose(got_pad[0, : audio.shape[1]], normalize_audio(audio)[0], atol=1e-6)
    assert torch.all(got_pad[0, audio.shape[1] :] == 0)


def test_padded_batch_matches_single_clips():
    torch.manual_seed(1)
    enc = HubertEncoder(size="tiny").eval()
    a, b = _audio(1, 1.0, seed=2)[0], _audio(1, 0.6, seed=3)[0]
    batch = torch.zeros(2, a.numel())
    batch[0], batch[1, : b.numel()] = a, b
    with torch.no_grad():
        out = enc(batch, lengths=torch.tensor([a.numel(), b.numel()]))
        one_b = enc(b[None])
    n_b = enc.num_frames(b.numel())
    assert one_b.shape[1] == n_b
    assert torch.allclose(out[1, :n_b], one_b[0], atol=1e-5)


def test_save_pretrained_folder_loads_identical_weights(tmp_path):
    torch.manual_seed(2)
    enc = HubertEncoder(size="tiny").eval()
    enc.model.save_pretrained(tmp_path)
    loaded = HubertEncoder(pretrained=str(tmp_path)).eval()
    for (name, p), (name2, q) in zip(
        enc.model.state_dict().items(), loaded.model.state_dict().items(), strict=True
    ):
        assert name == name2 and torch.equal(p, q), name
    audio = _audio(1, 0.5)
    with torch.no_grad():
        assert torch.equal(enc(audio), loaded(audio))


def test_bad_local_folder_and_offline_hub_id_fail_clearly(tmp_path, monkeypatch):
    with pytest.raises(PretrainedNotAvailableError, match="save_pretrained"):
        HubertEncoder(pretrained=str(tmp_path))  # empty folder
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # An empty cache, so a copy in the user's real Hugging Face cache cannot make this pass
    # (transformers and huggingface_hub read constants.HF_HUB_CACHE at call time).
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    with pytest.raises(PretrainedNotAvailableError) as info:
        HubertEncoder(pretrained="facebook/hubert-base-ls960")
    msg = str(info.value)
    assert "could not be downloaded" in msg and "pretrained=DIR" in msg
    assert "facebook/hubert-base-ls960" in msg


@pytest.mark.parametrize(
    ("freeze", "frozen", "trainable"),
    [
        ("none", [], ["feature_extractor.", "feature_projection.", "encoder.layers.0."]),
        ("feature_extractor", ["feature_extractor."], ["feature_projection.", "encoder."]),
        (
            "facexhubert",
            ["feature_extractor.", "feature_projection.", "encoder.layers.0.", "encoder.layers.1."],
            ["encoder.layers.2.", "encoder.layers.3.", "encoder.pos_conv_embed."],
        ),
        ("all", ["feature_extractor.", "feature_projection.", "encoder."], []),
        (
            1,
            ["feature_extractor.", "feature_projection.", "encoder.layers.0."],
            ["encoder.layers.1."],
        ),
        (["encoder.layers.3"], ["encoder.layers.3."], ["feature_extractor.", "encoder.layers.2."]),
    ],
)
def test_freezing_sets_requires_grad(freeze, frozen, trainable):
    enc = HubertEncoder(size="small", freeze=freeze)
    params = dict(enc.model.named_parameters())
    for prefix in frozen:
        hits = [n for n in params if n.startswith(prefix)]
        assert hits and not any(params[n].requires_grad for n in hits), prefix
    for prefix in trainable:
        hits = [n for n in params if n.startswith(prefix)]
        assert hits and all(params[n].requires_grad for n in hits), prefix


def test_bad_freeze_and_layer_are_rejected():
    with pytest.raises(ValueError, match="unknown freeze"):
        HubertEncoder(freeze="cnn")
    with pytest.raises(ValueError, match="matches no parameter"):
        HubertEncoder(freeze=["decoder"])
    with pytest.raises(ValueError, match="layer must index"):
        HubertEncoder(layer=7)


def test_layer_choice_and_weighted_sum():
    torch.manual_seed(3)
    audio = _audio(1, 0.5)
    last = HubertEncoder(size="tiny").eval()
    first = HubertEncoder(size="tiny", layer=0).eval()
    weighted = HubertEncoder(size="tiny", layer="weighted").eval()
    first.model.load_state_dict(last.model.state_dict())
    weighted.model.load_state_dict(last.model.state_dict())
    with torch.no_grad():
        states = last.model(normalize_audio(audio), output_hidden_states=True).hidden_states
        assert torch.equal(first(audio), states[0])
        assert torch.allclose(weighted(audio), torch.stack(states).mean(0), atol=1e-6)
    assert weighted.layer_weights.requires_grad


@pytest.mark.parametrize("layer", ["last", 1, "weighted"])
def test_hidden_states_then_combine_is_the_forward_output(layer):
    torch.manual_seed(4)
    encoder = HubertEncoder(size="tiny", layer=layer).eval()
    if layer == "weighted":
        with torch.no_grad():
            encoder.layer_weights.copy_(torch.tensor([0.5, -1.0, 2.0]))
    audio, lengths = _audio(2, 0.6), torch.tensor([9600, 7000])
    with torch.no_grad():
        states = encoder.hidden_states(audio, lengths)
        assert states.shape[0] == (3 if layer == "weighted" else 1)
        assert torch.allclose(encoder.combine(states), encoder(audio, lengths), atol=1e-6)
    if layer == "weighted":
        with pytest.raises(ValueError, match="3 hidden states"):
            encoder.combine(states[:2])


def test_frame_counts_and_shape_errors():
    enc = HubertEncoder(size="tiny")
    for s in (400, 719, 720, 16000, 16001, 33333):
        assert enc.num_frames(s) == hubert_num_frames(s) == (s - 400) // 320 + 1
        # 50 Hz features span the motion frames to within 1.5 frames: S2GNet interpolates
        assert abs(hubert_num_frames(s) / 2 - num_motion_frames(s)) <= 1.5
    with pytest.raises(ValueError, match=r"\[B, S\]"):
        enc(torch.zeros(16000))
    with pytest.raises(ValueError, match="at least 400 samples"):
        enc(torch.zeros(1, 399))


def test_encode_long_matches_one_pass():
    torch.manual_seed(4)
    enc = HubertEncoder(size="tiny", layer=0).eval()
    audio = _audio(1, 4.3, seed=5)[0]
    with torch.no_grad():
        whole = enc(audio[None])[0]
    # Input to the transformer: exact, as the overlap covers the local receptive field
    chunked = enc.encode_long(audio, chunk_seconds=1.0, overlap_seconds=0.5)
    assert chunked.shape == whole.shape
    assert torch.allclose(chunked, whole, atol=1e-5)
    # A window bigger than the clip is one pass
    deep = HubertEncoder(size="tiny").eval()
    with torch.no_grad():
        one_window = deep.encode_long(audio, chunk_seconds=10.0)
        assert torch.allclose(one_window, deep(audio[None])[0], atol=1e-5)
        # Deep layers: global attention, so windows approximate; stitched result stays close
        full = deep(audio[None])[0]
        win = deep.encode_long(audio, chunk_seconds=2.0, overlap_seconds=1.0)
    cos = torch.nn.functional.cosine_similarity(win, full, dim=-1)
    assert win.shape == full.shape and cos.min() > 0.9, cos.min()
