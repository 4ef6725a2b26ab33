"""S2GNet: speech features + emotion + subject -> per-frame face points (DESIGN.md section 2).

After FaceXHuBERT (Haque and Yumak, ICMI 2023) as EmoTalk3D uses it: 50 Hz HuBERT features are
paired into 25 fps motion frames (two consecutive feature frames concatenated; linear
interpolation first when the feature count is not exactly twice the frame count), run through a
2-layer GRU, conditioned on the emotion vector e and a learnt per-subject style embedding, and a
zero-initialised linear head predicts per-point offsets that are added to the subject's
template. An untrained model therefore outputs the template exactly.

The template is an input, not a parameter: any training subject's style (subject id) can drive
any template of the same topology.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from emotalk3d.constants import EMOTION_DIM


def align_features(
    features: Tensor,  # [B, T_a, D]
    num_frames: int,
    feature_lengths: Tensor | None = None,  # [B]
    frame_lengths: Tensor | None = None,  # [B]
) -> Tensor:  # [B, T, 2 D]
    """Map 50 Hz features to exactly `num_frames` motion frames of paired features.

    Each motion frame gets two consecutive 50 Hz feature frames, concatenated. When a clip has
    exactly twice as many feature frames as motion frames they are paired as they are;
    otherwise its features are first linearly interpolated (over the clip's whole span) to
    2 T frames. With lengths, every clip of a padded batch is aligned on its own valid part,
    so a batched clip gets the same frames as the clip alone; frames past a clip's
    `frame_lengths` are zero.

    Args:
        features: audio features, zero-padded on the right in a batch.
        num_frames: T, the motion frames to produce (the longest clip's).
        feature_lengths: valid feature frames per clip (default: all T_a).
        frame_lengths: motion frames per clip (default: all T).

    Returns:
        Paired features [B, T, 2 D].
    """
    if features.ndim != 3:
        raise ValueError(f"features must be [B, T_a, D], got {tuple(features.shape)}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    B, T_a, D = features.shape
    if feature_lengths is None and frame_lengths is None:
        return _pair(features, num_frames)
    fl = torch.full((B,), T_a) if feature_lengths is None else feature_lengths.cpu()
    ml = torch.full((B,), num_frames) if frame_lengths is None else frame_lengths.cpu()
    if int(ml.max()) > num_frames or int(fl.max()) > T_a or int(fl.min()) < 1:
        raise ValueError(
            f"lengths out of range: frame_lengths {ml.tolist()} (max {num_frames}), "
            f"feature_lengths {fl.tolist()} (1..{T_a})"
        )
    out = features.new_zeros(B, num_frames, 2 * D)
    for i in range(B):
        t_i = int(ml[i])
        out[i, :t_i] = _pair(features[i : i + 1, : int(fl[i])], t_i)[0]
    return out


def stack_future(
    x: Tensor,  # [B, T, F]
    lookahead: int,
) -> Tensor:  # [B, T, (lookahead + 1) F]
    """Each frame's features followed by those of the next `lookahead` frames.

    Frames past the end are zero, as the padding of a batch is, so a clip gets the same
    stacked frames alone and in a padded batch. With `lookahead` 0 this is `x` itself.
    """
    if lookahead < 0:
        raise ValueError(f"lookahead must be >= 0 frames, got {lookahead}")
    if lookahead == 0:
        return x
    padded = F.pad(x, (0, 0, 0, lookahead))  # [B, T + k, F]
    return torch.cat([padded[:, k : k + x.shape[1]] for k in range(lookahead + 1)], dim=-1)


def _pair(
    features: Tensor,  # [B, T_a, D]
    num_frames: int,
) -> Tensor:  # [B, T, 2 D]
    B, T_a, D = features.shape
    if T_a != 2 * num_frames:
        features = F.interpolate(
            features.transpose(1, 2), size=2 * num_frames, mode="linear", align_corners=False
        ).transpose(1, 2)
    return features.reshape(B, num_frames, 2 * D)


class S2GNet(nn.Module):
    """Speech-to-geometry network of EmoTalk3D (He et al., ECCV 2024, section 3.2; DESIGN.md
    section 2 "S2GNet"), after FaceXHuBERT.

    Paired audio features (each frame with the next `lookahead` frames' stacked after it)
    -> linear projection -> GRU (2 layers, hidden 256) -> concatenated
    with an emotion embedding and a subject style embedding -> fusion layer -> zero-initialised
    linear head -> per-point offsets [B, T, P, 3] added to the template [B, P, 3].

    With `audio_encoder` (a `HubertEncoder`), `forward` takes raw 16 kHz audio and the encoder
    is trained end to end with the rest (its frozen layers as it configures them); without, it
    takes precomputed features [B, T_a, audio_dim].
    """

    def __init__(
        self,
        num_points: int,
        num_subjects: int = 1,
        audio_dim: int | None = None,
        audio_encoder: nn.Module | None = None,
        hidden_size: int = 256,
        num_layers: int = 2,
        emotion_dim: int = EMOTION_DIM,
        emotion_embed_dim: int = 64,
        subject_embed_dim: int = 32,
        dropout: float = 0.0,
        use_emotion: bool = True,
        fps: int = 25,
        sample_rate: int = 16000,
        head_rank: int | None = None,
        lookahead: int = 0,
    ) -> None:
        """Build the network.

        Args:
            num_points: P, face points per frame (the template's vertex count).
            num_subjects: training subjects, one learnt style embedding each.
            audio_dim: feature size D of precomputed features; taken from
                `audio_encoder.output_dim` when an encoder is given.
            audio_encoder: optional `HubertEncoder` run inside `forward` on raw audio.
            hidden_size: GRU hidden size (and fusion width).
            num_layers: GRU layers.
            emotion_dim: E, the emotion vector size.
            emotion_embed_dim: width of the emotion embedding.
            subject_embed_dim: width of the subject style embedding.
            dropout: dropout between GRU layers and after the fusion layer.
            use_emotion: False for the no-emotion ablation: the emotion input is ignored.
            fps: motion frames per second.
            sample_rate: audio sample rate the encoder expects.
            head_rank: None for a full linear head; r for a rank-r factorised head
                (Linear(hidden, r) then the zero-initialised Linear(r, P * 3)): what
                `compress_head` makes of a trained full head for a compact bundle.
            lookahead: future motion frames whose paired features each frame also sees
                (`stack_future`). The GRU runs forwards in time, and lips move ahead of the
                sound they shape (coarticulation), so a frame needs some audio after it:
                2 frames (80 ms) adds 80 ms to the streaming latency and stays within its
                look-ahead. 0: FaceXHuBERT's pairing alone.
        """
        super().__init__()
        if audio_encoder is not None:
            audio_dim = int(audio_encoder.output_dim)
        if audio_dim is None:
            raise ValueError("S2GNet needs audio_dim (feature size D) or an audio_encoder")
        if num_points < 1 or num_subjects < 1:
            raise ValueError(
                f"num_points and num_subjects must be >= 1, got {num_points}, {num_subjects}"
            )
        self.num_points = num_points
        self.num_subjects = num_subjects
        self.audio_dim = audio_dim
        self.emotion_dim = emotion_dim
        self.use_emotion = use_emotion
        self.fps = fps
        self.sample_rate = sample_rate
        self.audio_encoder = audio_encoder
        if lookahead < 0:
            raise ValueError(f"lookahead must be >= 0 frames, got {lookahead}")
        self.lookahead = int(lookahead)
        self.input_proj = nn.Linear(2 * audio_dim * (self.lookahead + 1), hidden_size)
        self.gru = nn.GRU(
            hidden_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.emotion_embed = (
            nn.Sequential(nn.Linear(emotion_dim, emotion_embed_dim), nn.LeakyReLU(0.2))
            if use_emotion
            else None
        )
        self.subject_embed = nn.Embedding(num_subjects, subject_embed_dim)
        cond_dim = hidden_size + subject_embed_dim + (emotion_embed_dim if use_emotion else 0)
        self.fuse = nn.Sequential(
            nn.Linear(cond_dim, hidden_size), nn.LeakyReLU(0.2), nn.Dropout(dropout)
        )
        self.head_rank = head_rank
        if head_rank is None:
            self.head = nn.Linear(hidden_size, num_points * 3)
        else:
            if not 1 <= head_rank <= min(hidden_size, num_points * 3):
                raise ValueError(
                    f"head_rank must be in [1, {min(hidden_size, num_points * 3)}], got {head_rank}"
                )
            self.head = nn.Sequential(
                nn.Linear(hidden_size, head_rank, bias=False), nn.Linear(head_rank, num_points * 3)
            )
        last = self.head if head_rank is None else self.head[1]
        nn.init.zeros_(last.weight)  # residual head: untrained output == template
        nn.init.zeros_(last.bias)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (all but `audio_encoder`), read back from the module."""
        return {
            "num_points": int(self.num_points),
            "num_subjects": int(self.num_subjects),
            **({} if self.audio_encoder is not None else {"audio_dim": int(self.audio_dim)}),
            "hidden_size": int(self.gru.hidden_size),
            "num_layers": int(self.gru.num_layers),
            "emotion_dim": int(self.emotion_dim),
            "emotion_embed_dim": (
                int(self.emotion_embed[0].out_features) if self.use_emotion else 64
            ),
            "subject_embed_dim": int(self.subject_embed.embedding_dim),
            "dropout": float(self.gru.dropout),
            "use_emotion": bool(self.use_emotion),
            "fps": int(self.fps),
            "sample_rate": int(self.sample_rate),
            "head_rank": self.head_rank,
            "lookahead": int(self.lookahead),
        }

    def num_frames(self, num_samples: int) -> int:
        """Motion frames for a clip of `num_samples` audio samples: ceil(duration * fps)."""
        return -(-int(num_samples) * int(self.fps) // int(self.sample_rate))

    def forward(
        self,
        audio: Tensor,  # [B, S] with an audio_encoder, else [B, T_a, D]
        template: Tensor,  # [B, P, 3] (or [P, 3], shared)
        emotion: Tensor,  # [B, E]
        subject: Tensor,  # [B] int64 subject ids
        num_frames: int | None = None,
        audio_lengths: Tensor | None = None,  # [B]
        frame_lengths: Tensor | None = None,  # [B]
    ) -> Tensor:  # [B, T, P, 3]
        """Predict the face points of every motion frame.

        Args:
            audio: raw 16 kHz audio (zero-padded) when the model holds an audio encoder,
                otherwise precomputed 50 Hz features.
            template: each clip's neutral face points (mm).
            emotion: emotion vectors (see `emotalk3d.constants.emotion_vector`).
            subject: ids in [0, num_subjects) selecting the speaking style.
            num_frames: T; default ceil(S * fps / sample_rate) for raw audio (required for
                features).
            audio_lengths: valid samples (raw audio) or feature frames (features) per clip in
                a padded batch; None when all clips fill the batch.
            frame_lengths: motion frames per clip in a padded batch (e.g. each clip's mesh
                count); default ceil(audio_lengths * fps / sample_rate) for raw audio, T for
                features. Frames past a clip's length are padding.

        Returns:
            Face points [B, T, P, 3] = template + predicted offsets.
        """
        self._check_audio(audio)
        self._check_conditions(audio.shape[0], template, emotion, subject)  # before the encoder
        if self.audio_encoder is not None:
            if num_frames is None:
                num_frames = self.num_frames(audio.shape[1])
            features = self.audio_encoder(audio, audio_lengths)  # [B, T_a, D]
            feature_lengths = None
            if audio_lengths is not None:
                feature_lengths = self.audio_encoder.num_frames(audio_lengths)
                if frame_lengths is None:
                    n = [min(self.num_frames(int(s)), num_frames) for s in audio_lengths]
                    frame_lengths = torch.tensor(n)
        else:
            if num_frames is None:
                raise ValueError("S2GNet on precomputed features needs num_frames (T)")
            features, feature_lengths = audio, audio_lengths
        return self.decode(
            features, template, emotion, subject, num_frames, feature_lengths, frame_lengths
        )

    def decode(
        self,
        features: Tensor,  # [B, T_a, D] 50 Hz audio features
        template: Tensor,  # [B, P, 3] (or [P, 3], shared)
        emotion: Tensor,  # [B, E]
        subject: Tensor,  # [B] int64 subject ids
        num_frames: int,
        feature_lengths: Tensor | None = None,  # [B]
        frame_lengths: Tensor | None = None,  # [B]
    ) -> Tensor:  # [B, T, P, 3]
        """Face points from audio features: everything of `forward` after the encoder.

        `forward` with an encoder calls this on the encoder's output; training on features
        cached from a frozen encoder calls it directly. Arguments as `forward`'s for
        precomputed features.
        """
        B = features.shape[0]
        if features.ndim != 3 or features.shape[-1] != self.audio_dim:
            raise ValueError(
                f"features must be [B, T_a, D] with D = audio_dim = {self.audio_dim}, got "
                f"{tuple(features.shape)}"
            )
        template = self._check_conditions(B, template, emotion, subject)
        x = align_features(features, num_frames, feature_lengths, frame_lengths)  # [B, T, 2D]
        x = stack_future(x, self.lookahead)  # [B, T, 2D (lookahead + 1)]
        h, _ = self.gru(self.input_proj(x))  # [B, T, H]
        T = h.shape[1]
        cond = [h, self.subject_embed(subject)[:, None].expand(-1, T, -1)]
        if self.emotion_embed is not None:
            cond.append(self.emotion_embed(emotion.to(h.dtype))[:, None].expand(-1, T, -1))
        offsets = self.head(self.fuse(torch.cat(cond, dim=-1)))  # [B, T, P * 3]
        return template[:, None] + offsets.view(B, T, self.num_points, 3)

    def _check_audio(self, audio: Tensor) -> None:
        want = "[B, S] raw audio" if self.audio_encoder is not None else "[B, T_a, D] features"
        if audio.ndim != (2 if self.audio_encoder is not None else 3):
            raise ValueError(f"S2GNet expects {want}, got {tuple(audio.shape)}")

    def _check_conditions(
        self,
        B: int,
        template: Tensor,  # [B, P, 3] or [P, 3]
        emotion: Tensor,  # [B, E]
        subject: Tensor,  # [B]
    ) -> Tensor:  # [B, P, 3]
        if template.ndim == 2:
            template = template.expand(B, -1, -1)
        if template.shape != (B, self.num_points, 3):
            raise ValueError(
                f"template must be [B, P, 3] = [{B}, {self.num_points}, 3], got "
                f"{tuple(template.shape)}; S2GNet was built for P = {self.num_points} points"
            )
        if emotion.shape != (B, self.emotion_dim):
            raise ValueError(
                f"emotion must be [B, E] = [{B}, {self.emotion_dim}], got {tuple(emotion.shape)}; "
                f"build it with emotalk3d.constants.emotion_vector"
            )
        if subject.shape != (B,) or subject.is_floating_point():
            raise ValueError(f"subject must be int64 ids [B] = [{B}], got {subject.shape}")
        if B and (int(subject.min()) < 0 or int(subject.max()) >= self.num_subjects):
            raise ValueError(
                f"subject ids must lie in [0, {self.num_subjects}) (training subjects), got "
                f"{subject.tolist()}"
            )
        return template


def low_rank_factors(
    weight: Tensor,  # [O, I]
    rank: int,
) -> tuple[Tensor, Tensor]:  # [rank, I], [O, rank]
    """Best rank-r factorisation of a linear map (truncated SVD, Eckart-Young).

    Returns (A, B) with B @ A the rank-r matrix nearest to `weight` in Frobenius norm; the
    singular values are split evenly between the factors (sqrt on each side).
    """
    if not 1 <= rank <= min(weight.shape):
        raise ValueError(f"rank must be in [1, {min(weight.shape)}], got {rank}")
    u, s, vh = torch.linalg.svd(weight.double(), full_matrices=False)  # [O, k], [k], [k, I]
    root = s[:rank].sqrt()
    a = root[:, None] * vh[:rank]  # [rank, I]
    b = u[:, :rank] * root[None]  # [O, rank]
    return a.to(weight.dtype), b.to(weight.dtype)


def compress_head(net: S2GNet, rank: int) -> S2GNet:
    """A copy of a trained S2GNet whose full output head is replaced by its best rank-r
    factorisation (`low_rank_factors`); the other weights (and the audio encoder module) are
    the same.

    The face offsets of a rig-driven subject live in a low-dimensional space (a few dozen
    blendshapes), so a rank of 64-128 keeps the predictions to a small fraction of a mm
    while the head shrinks from hidden x 3P to (hidden + 3P) x r weights.
    """
    if net.head_rank is not None:
        raise ValueError(f"the head is already factorised (rank {net.head_rank})")
    out = S2GNet(audio_encoder=net.audio_encoder, **{**net.config(), "head_rank": rank})
    state = {k: v for k, v in net.state_dict().items() if not k.startswith(("head.", "audio_"))}
    a, b = low_rank_factors(net.head.weight.detach(), rank)
    state |= {"head.0.weight": a, "head.1.weight": b, "head.1.bias": net.head.bias.detach()}
    out.load_state_dict(state, strict=False)
    return out.to(net.head.weight.device).train(net.training)
