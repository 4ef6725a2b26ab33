"""Speech emotion extractor: 8 emotion classes and an intensity (DESIGN.md section 2).

EmoTalk3D's emotion extractor is a wav2vec2-style transformer context network fine-tuned on
labelled speech. Here it is ``transformers.Wav2Vec2Model`` (wrapped, never subclassed) with a
small pooling head: masked mean and standard deviation over the valid 50 Hz frames, optionally
joined by cheap prosody statistics of the raw waveform (loudness, a pitch proxy, voicing),
then a hidden layer, 8 emotion logits (``EMOTIONS`` order) and an intensity in [0, 1].

Why prosody statistics: per-clip input normalisation (as wav2vec2 expects) removes the
overall loudness, and a randomly initialised transformer needs long training to find pitch in
raw samples. The synthetic dataset makes emotion audible through rate, pitch, pitch range and
loudness (DESIGN.md section 4), so a handful of numbers computed from the waveform lets the
``small`` model learn on a 2-core CPU in minutes. The transformer remains the core; set
``prosody=False`` for a pure wav2vec2 classifier (e.g. when fine-tuning a pretrained one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import Wav2Vec2Config, Wav2Vec2Model

from emotalk3d.audio.hubert import (
    FreezeMode,
    apply_freeze,
    check_audio_batch,
    conv_num_frames,
    freeze_prefixes,
    lengths_to_mask,
    load_pretrained,
    normalize_audio,
)
from emotalk3d.audio.load import SAMPLE_RATE
from emotalk3d.constants import EMOTIONS, NUM_EMOTIONS

EmotionSize = Literal["tiny", "small", "base"]

HEAD_FILE = "emotion_head.safetensors"
SETTINGS_FILE = "emotion_extractor.json"

PROSODY_WINDOW = 400  # samples, as the first HuBERT/wav2vec2 frame (25 ms)
PROSODY_HOP = 320  # samples: 50 Hz, aligned with the transformer's frames
PITCH_MIN_HZ, PITCH_MAX_HZ = 80.0, 400.0
VOICING_THRESHOLD = 0.5  # normalised autocorrelation peak above which a frame is voiced
NUM_PROSODY_STATS = 7
# Mean and standard deviation of `prosody_stats` over the training clips of the built-in `small`
# synthetic dataset (whole clips). The extractor standardises the statistics with these fixed
# constants: as returned, they sit off-centre (loudness spread ~2.4) with spreads of 0.25-0.7,
# next to 256 unit-scale transformer features, and the head did not pick them up.
PROSODY_MEAN = (-0.199, 2.357, -0.281, 0.488, 1.330, 0.263, 0.296)
PROSODY_STD = (0.248, 0.484, 0.466, 0.371, 0.698, 0.292, 0.253)


def wav2vec2_config(size: EmotionSize) -> Wav2Vec2Config:
    """A Wav2Vec2Config for a randomly initialised backbone of a named size.

    Args:
        size: ``tiny`` (hidden 32, 2 layers: tests), ``small`` (hidden 128, 4 layers, convolutions
            widening from 16 to 128 channels: trainable on a 2-core CPU in minutes) or ``base`` (the
            standard wav2vec2 Base, 768 wide, 12 layers).

    Returns:
        The config. tiny and small use layer-normalised convolutions, so padded batches give
        exactly the single-clip results.
    """
    if size == "base":
        return Wav2Vec2Config()
    common = dict(
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        feat_extract_norm="layer",
        layerdrop=0.0,
    )
    if size == "tiny":
        return Wav2Vec2Config(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            conv_dim=(32,) * 7,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=4,
            mask_time_prob=0.0,
            **common,
        )
    if size == "small":
        return Wav2Vec2Config(
            hidden_size=128,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=512,
            conv_dim=(16, 32, 32, 64, 64, 128, 128),
            num_conv_pos_embeddings=64,
            num_conv_pos_embedding_groups=8,
            # No SpecAugment: the masked frames (one learnt vector each) acted as query tokens
            # that the pooled head came to rely on, so eval mode (no masks) lost the cue:
            # 73% training-clip accuracy in train mode, 23% in eval mode (issue 3).
            mask_time_prob=0.0,
            hidden_dropout=0.1,
            attention_dropout=0.0,  # dropout masks cost CPU time; hidden dropout suffices
            activation_dropout=0.0,
            **common,
        )
    raise ValueError(f"unknown size {size!r}; expected one of: tiny, small, base")


def frame_signal(
    audio: Tensor,  # [B, S]
    window: int = PROSODY_WINDOW,
    hop: int = PROSODY_HOP,
) -> Tensor:  # [B, T_a, window]
    """Cut audio into frames of ``window`` samples every ``hop`` samples (no padding)."""
    if audio.shape[1] < window:
        return audio.new_zeros(audio.shape[0], 0, window)
    return audio.unfold(1, window, hop)


def prosody_frames(
    audio: Tensor,  # [B, S]
    sample_rate: int = SAMPLE_RATE,
) -> tuple[Tensor, Tensor, Tensor]:  # [B, T_a] each
    """Per-frame loudness (dB), log2 pitch proxy and voicing strength of raw audio.

    Frames are 25 ms every 20 ms (the transformer's 50 Hz grid). The pitch proxy is the lag of
    the first normalised autocorrelation peak between 80 and 400 Hz that comes within 15 % of
    the highest (unbiased estimate);
    the voicing strength is that peak's height (about 1 for a periodic frame, near 0 for
    noise).

    Returns:
        energy_db: 10 log10 of the frame's mean square (floored at -100 dB).
        log2_f0: log2 of the pitch proxy in Hz.
        voicing: normalised autocorrelation at the chosen lag.
    """
    frames = frame_signal(audio)  # [B, T_a, W]
    window = frames.shape[-1]
    energy = frames.pow(2).mean(dim=-1)
    energy_db = 10.0 * torch.log10(energy + 1e-10)
    centred = frames - frames.mean(dim=-1, keepdim=True)
    nfft = 1 << (2 * window - 1).bit_length()
    spec = torch.fft.rfft(centred, n=nfft, dim=-1)
    acf = torch.fft.irfft(spec.real.pow(2) + spec.imag.pow(2), n=nfft, dim=-1)[..., :window]
    lo = int(sample_rate // PITCH_MAX_HZ)
    hi = min(int(sample_rate // PITCH_MIN_HZ), window - 1)
    lags = torch.arange(lo, hi + 1, device=audio.device, dtype=audio.dtype)
    unbiased = acf[..., lo : hi + 1] * (window / (window - lags))
    norm = unbiased / acf[..., :1].clamp(min=1e-10)
    # The shortest-lag local peak within 15 % of the highest one: avoids octave-down errors
    # (a periodic frame also peaks at twice its period).
    peak = norm.amax(dim=-1, keepdim=True)
    inner = norm[..., 1:-1]
    is_peak = (inner >= norm[..., :-2]) & (inner >= norm[..., 2:]) & (inner >= 0.85 * peak)
    has_peak = is_peak.any(dim=-1)
    first = is_peak.to(torch.int8).argmax(dim=-1) + 1
    best = torch.where(has_peak, first, norm.argmax(dim=-1))
    voicing = norm.gather(-1, best[..., None]).squeeze(-1)
    log2_f0 = torch.log2(sample_rate / lags[best])
    return energy_db, log2_f0, voicing


def masked_mean_std(
    values: Tensor,  # [B, T, D]
    mask: Tensor,  # [B, T] float (weights, usually 0/1)
) -> tuple[Tensor, Tensor]:  # [B, D], [B, D]
    """Weighted mean and standard deviation over time; all-zero weights give zeros."""
    weight = mask.unsqueeze(-1)
    count = weight.sum(dim=1).clamp(min=1e-6)
    mean = (values * weight).sum(dim=1) / count
    var = (((values - mean[:, None]) ** 2) * weight).sum(dim=1) / count
    return mean, torch.sqrt(var + 1e-6)


def prosody_stats(
    audio: Tensor,  # [B, S]
    frame_mask: Tensor,  # [B, T_a] bool, True on valid frames
) -> Tensor:  # [B, NUM_PROSODY_STATS]
    """Clip-level prosody: loudness mean/std, pitch mean/std and range, voiced fraction, voicing.

    Scaled to roughly unit range with fixed constants (no statistics learnt from data), so the
    features mean the same for any batch. Only valid frames count.
    """
    energy_db, log2_f0, voicing = prosody_frames(audio)
    frames = energy_db.shape[1]
    valid = frame_mask[:, :frames].to(audio.dtype)
    loud_mean, loud_std = masked_mean_std(energy_db[..., None], valid)
    # Pitch only where voiced and not near-silent (within 35 dB of the clip's mean loudness).
    voiced = valid * (voicing > VOICING_THRESHOLD) * (energy_db > loud_mean - 35.0)
    pitch_mean, pitch_std = masked_mean_std(log2_f0[..., None], voiced)
    has_pitch = (voiced.sum(dim=1, keepdim=True) > 0).to(audio.dtype)
    pitch_hi = torch.where(voiced > 0, log2_f0, torch.full_like(log2_f0, -1e4)).amax(dim=1)
    pitch_lo = torch.where(voiced > 0, log2_f0, torch.full_like(log2_f0, 1e4)).amin(dim=1)
    pitch_range = (pitch_hi - pitch_lo).clamp(min=0)[:, None] * has_pitch
    voiced_frac = voiced.sum(dim=1, keepdim=True) / valid.sum(dim=1, keepdim=True).clamp(min=1)
    voicing_mean, _ = masked_mean_std(voicing[..., None], valid)
    return torch.cat(
        [
            (loud_mean + 30.0) / 20.0,
            loud_std / 10.0,
            (pitch_mean - 7.5) * has_pitch,  # log2(180 Hz) ~ 7.5
            pitch_std * 2.0,
            pitch_range,
            voiced_frac * 2.0 - 1.0,
            voicing_mean * 2.0 - 1.0,
        ],
        dim=1,
    )


@dataclass
class EmotionOutput:
    """What :class:`EmotionExtractor` predicts for a batch."""

    logits: Tensor  # [B, 8] unnormalised scores in EMOTIONS order
    intensity: Tensor  # [B] in [0, 1]


class EmotionPrediction(NamedTuple):
    """One clip's prediction: the most likely emotion, its intensity, all probabilities."""

    emotion: str
    intensity: float
    probabilities: Tensor  # [8] in EMOTIONS order, sums to 1


class EmotionExtractor(nn.Module):
    """Speech emotion extractor of EmoTalk3D (DESIGN.md section 2, "Emotion extractor").

    A wav2vec2 transformer context network (``transformers.Wav2Vec2Model``) with statistics
    pooling and optional prosody features, giving 8 emotion logits and an intensity.
    ``forward`` returns predictions only; the training module owns the losses
    (cross-entropy on ``logits``, regression on ``intensity``).
    """

    def __init__(
        self,
        pretrained: str | None = None,
        size: EmotionSize = "small",
        freeze: FreezeMode | int | list[str] | None = None,
        prosody: bool = True,
        head_dim: int = 128,
        dropout: float = 0.1,
        normalize: bool = True,
    ) -> None:
        """Build or load the extractor.

        Args:
            pretrained: Hub id of a wav2vec2 model (e.g. ``facebook/wav2vec2-base``), a local
                folder from ``Wav2Vec2Model.save_pretrained``, or a folder written by
                :meth:`save_pretrained` (backbone, head and the head settings, which then
                override ``prosody``, ``head_dim`` and ``normalize``); None for a randomly
                initialised backbone of ``size``.
            size: Backbone size when ``pretrained`` is None: tiny (tests), small (CPU
                training) or base (wav2vec2 Base).
            freeze: Backbone parameters without gradient (as in HubertEncoder: ``none``,
                ``feature_extractor``, ``facexhubert``, ``all``, an int or name prefixes).
                None: ``feature_extractor`` for a pretrained backbone (the usual wav2vec2
                fine-tuning recipe), ``none`` for one trained from scratch.
            prosody: Join clip-level prosody statistics (loudness, pitch proxy, voicing) of
                the raw waveform to the pooled transformer features.
            head_dim: Width of the head's hidden layer.
            dropout: Dropout before the head's hidden layer.
            normalize: Normalise each clip to zero mean and unit variance before the
                backbone (prosody sees the raw waveform).
        """
        super().__init__()
        settings = {"prosody": prosody, "head_dim": head_dim, "normalize": normalize}
        head_state = None
        folder = Path(pretrained).expanduser() if pretrained is not None else None
        if folder is not None and (folder / SETTINGS_FILE).is_file():
            saved = json.loads((folder / SETTINGS_FILE).read_text())
            if tuple(saved.get("emotions", ())) != EMOTIONS:
                raise ValueError(
                    f"{folder} was saved with emotions {saved.get('emotions')}, but this "
                    f"version uses {list(EMOTIONS)}; retrain the extractor"
                )
            settings.update({k: saved[k] for k in settings if k in saved})
            head_state = load_file(str(folder / HEAD_FILE))
        if pretrained is None:
            self.backbone = Wav2Vec2Model(wav2vec2_config(size))
        else:
            self.backbone = load_pretrained(Wav2Vec2Model, pretrained)
        self.pretrained = pretrained
        self.prosody = bool(settings["prosody"])
        self.normalize = bool(settings["normalize"])
        self.head_dim = int(settings["head_dim"])
        hidden = self.backbone.config.hidden_size
        stats = NUM_PROSODY_STATS if self.prosody else 0
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(2 * hidden + stats, self.head_dim),
            nn.GELU(),
        )
        # Fixed (not learnt) standardisation of the prosody statistics: buffers, not saved.
        self.register_buffer("prosody_mean", torch.tensor(PROSODY_MEAN), persistent=False)
        self.register_buffer("prosody_std", torch.tensor(PROSODY_STD), persistent=False)
        self.classifier = nn.Linear(self.head_dim, NUM_EMOTIONS)
        self.intensity_head = nn.Linear(self.head_dim, 1)
        if head_state is not None:
            missing, unexpected = self._head_modules().load_state_dict(head_state, strict=False)
            if missing or unexpected:
                raise ValueError(
                    f"{folder / HEAD_FILE} does not fit this head: missing {missing}, "
                    f"unexpected {unexpected}"
                )
        if freeze is None:
            freeze = "feature_extractor" if pretrained is not None else "none"
        num_layers = self.backbone.config.num_hidden_layers
        apply_freeze(self.backbone, freeze_prefixes(freeze, num_layers))

    def _head_modules(self) -> nn.ModuleDict:
        return nn.ModuleDict(
            {"head": self.head, "classifier": self.classifier, "intensity": self.intensity_head}
        )

    @property
    def min_samples(self) -> int:
        """Shortest clip giving one frame (400 samples, 25 ms, for the standard stack)."""
        n = 1
        cfg = self.backbone.config
        for kernel, stride in zip(
            reversed(cfg.conv_kernel), reversed(cfg.conv_stride), strict=True
        ):
            n = (n - 1) * stride + kernel
        return max(n, PROSODY_WINDOW)

    def forward(
        self,
        audio: Tensor,  # [B, S]
        lengths: Tensor | None = None,  # [B]
        attention_mask: Tensor | None = None,  # [B, S]
    ) -> EmotionOutput:
        """Predict emotion logits and intensity for a batch of 16 kHz clips.

        Args:
            audio: Clips, zero-padded on the right when their lengths differ.
            lengths: Valid samples per clip; or give ``attention_mask`` (1 on valid samples,
                right padding), or neither when all clips fill the batch.
            attention_mask: Alternative to ``lengths``, as HF processors return it.

        Returns:
            EmotionOutput with logits [B, 8] and intensity [B].
        """
        if attention_mask is not None:
            if lengths is not None:
                raise ValueError("give lengths or attention_mask, not both")
            if attention_mask.shape != audio.shape:
                raise ValueError(
                    f"attention_mask must match audio [B, S] = {tuple(audio.shape)}, got "
                    f"{tuple(attention_mask.shape)}"
                )
            lengths = attention_mask.long().sum(dim=1)
        audio, lengths = check_audio_batch(audio, lengths, self.min_samples, "EmotionExtractor")
        if lengths is None:
            raw = audio
            sample_mask = None
            lengths = torch.full((audio.shape[0],), audio.shape[1], device=audio.device)
        else:
            sample_mask = lengths_to_mask(lengths, audio.shape[1])
            raw = audio * sample_mask  # padding is exactly zero whatever the caller put there
        x = normalize_audio(raw, lengths) if self.normalize else raw
        hidden = self.backbone(
            input_values=x,
            attention_mask=None if sample_mask is None else sample_mask.long(),
        ).last_hidden_state  # [B, T_a, D]
        frames = conv_num_frames(lengths, self.backbone.config)
        frame_mask = lengths_to_mask(frames, hidden.shape[1])
        mean, std = masked_mean_std(hidden, frame_mask.to(hidden.dtype))
        pooled = [mean, std]
        if self.prosody:
            stats = prosody_stats(raw, frame_mask)  # [B, NUM_PROSODY_STATS]
            pooled.append((stats - self.prosody_mean) / self.prosody_std)
        h = self.head(torch.cat(pooled, dim=1))
        return EmotionOutput(
            logits=self.classifier(h),
            intensity=torch.sigmoid(self.intensity_head(h)).squeeze(-1),
        )

    @torch.no_grad()
    def predict(self, audio: Tensor) -> EmotionPrediction:  # audio: [S]
        """Most likely emotion of one 16 kHz mono clip (runs in eval mode).

        Args:
            audio: One clip [S] (e.g. from ``emotalk3d.audio.load.load_audio``).

        Returns:
            (emotion name, intensity in [0, 1], probabilities [8] in EMOTIONS order).
        """
        if not isinstance(audio, Tensor) or audio.ndim != 1:
            got = tuple(audio.shape) if isinstance(audio, Tensor) else type(audio).__name__
            raise ValueError(f"predict expects one clip [S], got {got}; use forward for batches")
        was_training = self.training
        self.eval()
        try:
            out = self(audio[None].float())
        finally:
            self.train(was_training)
        probs = torch.softmax(out.logits[0], dim=-1)
        return EmotionPrediction(
            emotion=EMOTIONS[int(probs.argmax())],
            intensity=float(out.intensity[0]),
            probabilities=probs,
        )

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write the backbone (HF format), the head and its settings to ``folder``.

        ``EmotionExtractor(pretrained=folder)`` restores the identical model; the backbone
        part alone is a normal wav2vec2 folder that ``Wav2Vec2Model.from_pretrained`` reads.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(folder)
        state = {
            k: v.detach().cpu().contiguous() for k, v in self._head_modules().state_dict().items()
        }
        save_file(state, str(folder / HEAD_FILE))
        settings = {
            "emotions": list(EMOTIONS),
            "prosody": self.prosody,
            "head_dim": self.head_dim,
            "normalize": self.normalize,
        }
        (folder / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")
        return folder
