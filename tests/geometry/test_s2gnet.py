"""S2GNet: zero-initialised head, frame alignment for any clip length, conditioning."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from emotalk3d.audio.hubert import HubertEncoder
from emotalk3d.audio.load import load_audio, num_motion_frames
from emotalk3d.constants import EMOTION_DIM, emotion_vector
from emotalk3d.geometry.s2gnet import S2GNet, align_features, stack_future

P = 12


def inputs(B: int = 2, T_a: int = 20, D: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(B, T_a, D, generator=g)
    template = 10 * torch.randn(B, P, 3, generator=g)
    emotion = torch.stack([emotion_vector("happy", 1.0), emotion_vector("sad", 0.5)])[:B]
    subject = torch.arange(B) % 2
    return feats, template, emotion, subject


def test_untrained_outputs_exactly_the_template():
    feats, template, emotion, subject = inputs()
    net = S2GNet(num_points=P, num_subjects=2, audio_dim=8, hidden_size=16)
    # the zero-initialised residual head is pinned
    assert torch.count_nonzero(net.head.weight) == 0 and torch.count_nonzero(net.head.bias) == 0
    out = net(feats, template, emotion, subject, num_frames=10)
    assert out.shape == (2, 10, P, 3)
    assert torch.equal(out, template[:, None].expand(-1, 10, -1, -1))


def test_align_features_pairs_or_interpolates():
    feats = torch.arange(2 * 6 * 2, dtype=torch.float32).reshape(2, 6, 2)
    paired = align_features(feats, 3)
    assert paired.shape == (2, 3, 4)
    # exact pairs: frame t = [f(2t), f(2t + 1)]
    torch.testing.assert_close(paired[0, 1], torch.cat([feats[0, 2], feats[0, 3]]))
    for T in (1, 2, 4, 5, 7):  # not a ratio of 2: interpolated to exactly T frames
        assert align_features(feats, T).shape == (2, T, 4)
    # a constant signal stays constant under interpolation
    const = torch.ones(1, 7, 3)
    torch.testing.assert_close(align_features(const, 5), torch.ones(1, 5, 6))


def test_batched_alignment_equals_single_clip():
    feats = torch.randn(2, 9, 4)
    lengths = torch.tensor([9, 5])
    frames = torch.tensor([4, 3])
    batched = align_features(feats, 4, lengths, frames)
    torch.testing.assert_close(batched[1, :3], align_features(feats[1:, :5], 3)[0])
    assert torch.count_nonzero(batched[1, 3:]) == 0  # padding frames are zero
    torch.testing.assert_close(batched[0], align_features(feats[:1], 4)[0])


def test_stack_future_appends_the_next_frames():
    x = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    assert torch.equal(stack_future(x, 0), x)
    out = stack_future(x, 2)
    assert out.shape == (2, 4, 9)
    torch.testing.assert_close(out[1, 1], torch.cat([x[1, 1], x[1, 2], x[1, 3]]))
    torch.testing.assert_close(out[0, 3], torch.cat([x[0, 3], torch.zeros(6)]))  # past the end
    with pytest.raises(ValueError, match="lookahead"):
        stack_future(x, -1)


@pytest.mark.parametrize("lookahead", [0, 2])
def test_each_frame_reads_exactly_lookahead_future_frames(lookahead):
    torch.manual_seed(0)
    net = S2GNet(num_points=P, num_subjects=2, audio_dim=8, hidden_size=16, lookahead=lookahead)
    torch.nn.init.normal_(net.head.weight, std=0.1)  # trained-like head: offsets depend on audio
    assert net.config()["lookahead"] == lookahead
    feats, template, emotion, subject = inputs(B=1, T_a=20)
    t = 3  # motion frame t pairs feature frames 2t and 2t + 1
    base = net(feats, template, emotion, subject, num_frames=10)
    far = feats.clone()
    far[:, 2 * (t + lookahead + 1) :] += 5.0  # audio after what frame t may read
    near = feats.clone()
    near[:, 2 * (t + lookahead) + 1] += 5.0  # the last audio frame t reads
    out_far = net(far, template, emotion, subject, num_frames=10)
    out_near = net(near, template, emotion, subject, num_frames=10)
    torch.testing.assert_close(out_far[:, : t + 1], base[:, : t + 1])
    assert (out_near[:, t] - base[:, t]).abs().max() > 1e-4


def test_untrained_with_lookahead_outputs_the_template():
    feats, template, emotion, subject = inputs()
    net = S2GNet(num_points=P, num_subjects=2, audio_dim=8, hidden_size=16, lookahead=3)
    out = net(feats, template, emotion, subject, num_frames=10)
    assert torch.equal(out, template[:, None].expand(-1, 10, -1, -1))
    with pytest.raises(ValueError, match="lookahead"):
        S2GNet(num_points=P, audio_dim=8, lookahead=-1)


@pytest.fixture(scope="module")
def net_with_encoder():
    torch.manual_seed(0)
    enc = HubertEncoder(pretrained=None, size="tiny", freeze="none")
    net = S2GNet(num_points=P, num_subjects=2, audio_encoder=enc, hidden_size=16).eval()
    torch.nn.init.normal_(net.head.weight, std=0.1)  # give it motion
    return net


@pytest.mark.parametrize("num_samples", [400, 641, 1279, 1280, 1281, 7999, 16000, 16001, 23457])
def test_output_length_is_ceil_duration_times_fps(net_with_encoder, num_samples):
    audio = torch.randn(1, num_samples) * 0.1
    _, template, emotion, subject = inputs(B=1)
    with torch.no_grad():
        out = net_with_encoder(audio, template, emotion, subject)
    expected = -(-num_samples * 25 // 16000)
    assert out.shape == (1, expected, P, 3)
    assert expected == num_motion_frames(num_samples)


def test_padded_batch_matches_single_clips(net_with_encoder):
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(8001, generator=g) * 0.1, torch.randn(5121, generator=g) * 0.1
    batch = torch.zeros(2, 8001)
    batch[0], batch[1, :5121] = a, b
    _, template, emotion, subject = inputs(B=2)
    with torch.no_grad():
        out = net_with_encoder(
            batch, template, emotion, subject, audio_lengths=torch.tensor([8001, 5121])
        )
        single = net_with_encoder(b[None], template[1:], emotion[1:], subject[1:])
    assert out.shape[1] == num_motion_frames(8001)
    torch.testing.assert_close(out[1, : single.shape[1]], single[0], atol=1e-4, rtol=1e-4)


def test_same_frame_count_at_16k_and_44k(tmp_path):
    rng = np.random.default_rng(0)
    for i, n16 in enumerate([1601, 4003, 16000, 24321, 39999]):
        t = np.arange(n16) / 16000
        sig = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(n16)
        n44 = round(n16 * 44100 / 16000)
        t44 = np.arange(n44) / 44100
        sig44 = 0.3 * np.sin(2 * np.pi * 220 * t44) + 0.05 * rng.standard_normal(n44)
        sf.write(tmp_path / f"a{i}.wav", sig.astype(np.float32), 16000)
        sf.write(tmp_path / f"b{i}.wav", np.stack([sig44, sig44], 1).astype(np.float32), 44100)
        x16 = load_audio(tmp_path / f"a{i}.wav")
        x44 = load_audio(tmp_path / f"b{i}.wav")
        assert num_motion_frames(len(x16)) == num_motion_frames(len(x44)) == -(-n16 * 25 // 16000)


def test_offsets_do_not_depend_on_template_and_subject_style_transfers():
    feats, template, emotion, subject = inputs(B=1)
    torch.manual_seed(0)
    net = S2GNet(num_points=P, num_subjects=3, audio_dim=8, hidden_size=16)
    torch.nn.init.normal_(net.head.weight, std=0.1)
    other = template + 5.0
    out_a = net(feats, template, emotion, torch.tensor([2]), num_frames=10)
    out_b = net(feats, other, emotion, torch.tensor([2]), num_frames=10)
    torch.testing.assert_close(out_a - template[:, None], out_b - other[:, None])
    out_c = net(feats, template, emotion, torch.tensor([0]), num_frames=10)
    assert not torch.allclose(out_a, out_c)  # the subject id changes the style


def test_emotion_conditioning_and_ablation():
    feats, template, emotion, subject = inputs(B=1)
    torch.manual_seed(0)
    net = S2GNet(num_points=P, num_subjects=2, audio_dim=8, hidden_size=16)
    torch.nn.init.normal_(net.head.weight, std=0.1)
    angry = emotion_vector("angry", 1.0)[None]
    assert not torch.allclose(
        net(feats, template, emotion, subject, 10), net(feats, template, angry, subject, 10)
    )
    abl = S2GNet(num_points=P, num_subjects=2, audio_dim=8, hidden_size=16, use_emotion=False)
    torch.nn.init.normal_(abl.head.weight, std=0.1)
    torch.testing.assert_close(
        abl(feats, template, emotion, subject, 10), abl(feats, template, angry, subject, 10)
    )


def test_a_few_steps_reduce_the_loss():
    feats, template, emotion, subject = inputs()
    target = template[:, None] + torch.randn(2, 10, P, 3)
    torch.manual_seed(0)
    net = S2GNet(num_points=P, num_subjects=2, audio_dim=8, hidden_size=32)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = (net(feats, template, emotion, subject, 10) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_validation_messages():
    feats, template, emotion, subject = inputs()
    net = S2GNet(num_points=P, num_subjects=2, audio_dim=8, hidden_size=16)
    with pytest.raises(ValueError, match="P = 12"):
        net(feats, template[:, :5], emotion, subject, 10)
    with pytest.raises(ValueError, match=f"E\\] = \\[2, {EMOTION_DIM}\\]"):
        net(feats, template, emotion[:, :3], subject, 10)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        net(feats, template, emotion, torch.tensor([0, 5]), 10)
    with pytest.raises(ValueError, match="audio_dim = 8"):
        net(feats[..., :3], template, emotion, subject, 10)
    with pytest.raises(ValueError, match="num_frames"):
        net(feats, template, emotion, subject)
