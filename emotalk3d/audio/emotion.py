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


# Version 2 of the prosody statistics (the default): version 1's seven plus sixteen that
# measure the other cues the synthetic speech carries (docs/speech_to_geometry.md): spectral
# tilt, speaking rate and pauses, the fear tremolo, robust pitch and loudness levels and the
# sentence-final pitch movement. Extractors saved before version 2 existed load as version 1.
PROSODY_VERSIONS = (1, 2)
NUM_EXTRA_PROSODY_STATS = 16
TILT_SPLIT_HZ = 1500.0  # the synthetic tilt filter acts above about 1.5 kHz
SPEECH_DB = 35.0  # frames within this of the clip's loudest frame count as speech
LOUD_DB = 30.0  # frames within this of the loudest one give the spectral averages
TREMOLO_BAND_HZ = (5.5, 7.5)  # around the 6.5 Hz fear tremolo
MODULATION_BAND_HZ = (1.0, 12.0)  # syllable-rate loudness modulations
MODULATION_STEP_HZ = 0.25
FRAME_HZ = SAMPLE_RATE / PROSODY_HOP  # 50 Hz
# Mean and standard deviation of `extra_prosody_stats` over the training clips of the built-in
# `small` dataset (whole clips), to standardise them like PROSODY_MEAN / PROSODY_STD.
EXTRA_PROSODY_MEAN = (
    -9.082, 9.679, 0.163, 0.046, 3.487, -2.085, 4.033, 2.944,
    7.006, 7.196, 7.461, 0.455, -0.051, -23.047, -14.95, 0.903,
)  # fmt: skip
EXTRA_PROSODY_STD = (
    2.651, 0.262, 0.033, 0.028, 0.986, 0.729, 0.769, 0.667,
    0.491, 0.516, 0.558, 0.443, 0.269, 3.243, 3.241, 0.235,
)  # fmt: skip


def num_prosody_stats(version: int) -> int:
    """How many statistics a prosody-feature version gives (7 for version 1, 23 for 2)."""
    if version not in PROSODY_VERSIONS:
        raise ValueError(
            f"unknown prosody-feature version {version!r}; this emotalk3d knows "
            f"{list(PROSODY_VERSIONS)}: upgrade emotalk3d to load the extractor"
        )
    return NUM_PROSODY_STATS + (NUM_EXTRA_PROSODY_STATS if version >= 2 else 0)


def masked_quantile(
    values: Tensor,  # [B, T]
    mask: Tensor,  # [B, T] bool
    q: float,
) -> Tensor:  # [B]
    """Nearest-rank quantile over the masked entries of each row; 0 where a row has none."""
    ordered = torch.where(mask, values, torch.full_like(values, float("inf"))).sort(dim=1).values
    count = mask.sum(dim=1)
    index = torch.round((count - 1).clamp(min=0).to(values.dtype) * q).long()
    picked = ordered.gather(1, index[:, None]).squeeze(1)
    return torch.where(count > 0, picked, torch.zeros_like(picked))


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:  # [B, T], [B, T] bool -> [B]
    weight = mask.to(values.dtype)
    return (values * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1.0)


def extra_prosody_stats(
    audio: Tensor,  # [B, S]
    frame_mask: Tensor,  # [B, T_a] bool, True on valid frames
    sample_rate: int = SAMPLE_RATE,
) -> Tensor:  # [B, NUM_EXTRA_PROSODY_STATS]
    """Clip-level cues beyond loudness and pitch spread (version 2 of the prosody features).

    On the 50 Hz frames of :func:`prosody_frames`, with "speech" the valid frames within 35 dB
    of the clip's loudest, "loud" those within 30 dB and "voiced" the speech frames with a
    clear pitch, the statistics are, in order:

    0. spectral tilt: mean over loud frames of 10 log10 (energy above 1.5 kHz / 0.1-1.5 kHz);
    1. spectral centroid: mean over loud frames of log2 of the power-weighted frequency (Hz);
    2. pause fraction: valid frames that are not speech;
    3. inner pause fraction: the same between the first and last speech frame;
    4. voiced onsets per second of the speech span (a syllable-rate proxy);
    5. tremolo: log of the share of 5.5-7.5 Hz in the 1-12 Hz loudness modulation spectrum;
    6. modulation centroid: the power-weighted mean of that spectrum (Hz);
    7. frame-to-frame loudness change (dB) between adjacent voiced frames;
    8-10. 10th, 50th and 90th percentiles of log2 pitch over voiced frames;
    11. their spread (90th minus 10th);
    12. terminal contour: mean log2 pitch of the last quarter of voiced frames minus the median;
    13-14. median and 90th percentile of loudness (dB) over speech frames;
    15. log of the speech span's duration in seconds.

    Every statistic uses valid frames only, so a padded batch gives the single-clip values.
    """
    energy_db, log2_f0, voicing = prosody_frames(audio, sample_rate)
    B, T = energy_db.shape
    valid = frame_mask[:, :T]
    floor = torch.full_like(energy_db, -1e4)
    peak_db = torch.where(valid, energy_db, floor).amax(dim=1, keepdim=True)  # [B, 1]
    speech = valid & (energy_db > peak_db - SPEECH_DB)
    loud = valid & (energy_db > peak_db - LOUD_DB)
    speech_mean = _masked_mean(energy_db, speech)[:, None]
    voiced = speech & (voicing > VOICING_THRESHOLD) & (energy_db > speech_mean - SPEECH_DB)

    # Spectrum of each 25 ms frame (Hann window).
    frames = frame_signal(audio)[:, :T]  # [B, T, W]
    window = torch.hann_window(frames.shape[-1], periodic=False, dtype=audio.dtype)
    nfft = 1 << (frames.shape[-1] - 1).bit_length()
    centred = (frames - frames.mean(dim=-1, keepdim=True)) * window
    power = torch.fft.rfft(centred, n=nfft, dim=-1).abs().pow(2)  # [B, T, F]
    freqs = torch.arange(power.shape[-1], dtype=audio.dtype) * (sample_rate / nfft)
    high = power[..., freqs >= TILT_SPLIT_HZ].sum(dim=-1)
    low = power[..., (freqs >= 100.0) & (freqs < TILT_SPLIT_HZ)].sum(dim=-1)
    tilt = 10.0 * torch.log10((high + 1e-10) / (low + 1e-10))  # [B, T]
    centroid = (power * freqs).sum(dim=-1) / power.sum(dim=-1).clamp(min=1e-10)
    log_centroid = torch.log2(centroid.clamp(min=1.0))

    # Pauses and the speech span.
    idx = torch.arange(T, device=audio.device)
    has_speech = speech.any(dim=1)
    first = torch.where(speech, idx, torch.full_like(idx, T)).amin(dim=1)  # [B]
    last = torch.where(speech, idx, torch.full_like(idx, -1)).amax(dim=1)  # [B]
    span = ((last - first + 1).clamp(min=1)).to(audio.dtype)  # frames
    in_span = (idx >= first[:, None]) & (idx <= last[:, None]) & valid
    pause = 1.0 - _masked_mean(speech.to(audio.dtype), valid)
    inner_pause = 1.0 - _masked_mean(speech.to(audio.dtype), in_span)
    onsets = (voiced[:, 1:] & ~voiced[:, :-1]).sum(dim=1).to(audio.dtype)
    onset_rate = onsets / (span / FRAME_HZ)

    # Loudness modulation spectrum over the speech span (a direct DFT on a fixed grid).
    amplitude = torch.sqrt(10.0 ** (energy_db / 10.0))
    span_w = in_span.to(audio.dtype)
    env = amplitude / _masked_mean(amplitude, in_span)[:, None].clamp(min=1e-8) - 1.0
    env = env * span_w  # [B, T], zero outside the span
    mod_hz = torch.arange(
        MODULATION_BAND_HZ[0], MODULATION_BAND_HZ[1] + 1e-6, MODULATION_STEP_HZ, dtype=audio.dtype
    )  # [M]
    phase = 2.0 * torch.pi * idx.to(audio.dtype)[:, None] * mod_hz[None] / FRAME_HZ  # [T, M]
    mod = (env @ torch.cos(phase)).pow(2) + (env @ torch.sin(phase)).pow(2)  # [B, M]
    band = (mod_hz >= TREMOLO_BAND_HZ[0]) & (mod_hz <= TREMOLO_BAND_HZ[1])
    tremolo = torch.log((mod[:, band].sum(dim=1) + 1e-6) / (mod.sum(dim=1) + 1e-6))
    mod_centroid = (mod * mod_hz).sum(dim=1) / mod.sum(dim=1).clamp(min=1e-10)

    pairs = voiced[:, 1:] & voiced[:, :-1]
    jitter = _masked_mean((energy_db[:, 1:] - energy_db[:, :-1]).abs(), pairs)

    p10 = masked_quantile(log2_f0, voiced, 0.1)
    p50 = masked_quantile(log2_f0, voiced, 0.5)
    p90 = masked_quantile(log2_f0, voiced, 0.9)
    num_voiced = voiced.sum(dim=1, keepdim=True)  # [B, 1]
    rank = voiced.cumsum(dim=1)  # [B, T]: voiced frames so far
    tail = voiced & (rank > num_voiced - (num_voiced // 4).clamp(min=1))
    has_pitch = (num_voiced[:, 0] > 0).to(audio.dtype)
    terminal = (_masked_mean(log2_f0, tail) - p50) * has_pitch
    e50 = masked_quantile(energy_db, speech, 0.5)
    e90 = masked_quantile(energy_db, speech, 0.9)
    duration = torch.log(span / FRAME_HZ) * has_speech.to(audio.dtype)
    return torch.stack(
        [
            _masked_mean(tilt, loud),
            _masked_mean(log_centroid, loud),
            pause,
            inner_pause,
            onset_rate,
            tremolo,
            mod_centroid,
            jitter,
            p10,
            p50,
            p90,
            p90 - p10,
            terminal,
            e50,
            e90,
            duration,
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
        prosody_version: int = 2,
        prosody_head_dim: int = 0,
        backbone_dropout: float = 0.0,
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
            prosody_version: Which prosody statistics: 2 (default, 23 numbers: version 1's
                plus spectral tilt, rate, pauses, tremolo, pitch and loudness percentiles;
                see :func:`extra_prosody_stats`) or 1 (the first seven, :func:`prosody_stats`).
                Folders saved without the setting predate version 2 and load as 1.
            prosody_head_dim: Width of a separate prosody-only branch (statistics -> hidden ->
                8 logits) whose logits are added to the main head's; 0 for none.
            backbone_dropout: Modality dropout: in training, the probability of zeroing a
                clip's whole pooled transformer summary, so the head must also classify from
                the prosody statistics alone (a from-scratch transformer memorises the
                training sentences). Not used in eval mode.
        """
        super().__init__()
        if not 0.0 <= backbone_dropout < 1.0:
            raise ValueError(f"backbone_dropout must lie in [0, 1), got {backbone_dropout}")
        settings = {
            "prosody": prosody,
            "head_dim": head_dim,
            "normalize": normalize,
            "prosody_version": prosody_version,
            "prosody_head_dim": prosody_head_dim,
        }
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
            # Saved before these settings existed: version-1 statistics, no prosody branch.
            settings["prosody_version"] = saved.get("prosody_version", 1)
            settings["prosody_head_dim"] = saved.get("prosody_head_dim", 0)
            head_state = load_file(str(folder / HEAD_FILE))
        if pretrained is None:
            self.backbone = Wav2Vec2Model(wav2vec2_config(size))
        else:
            self.backbone = load_pretrained(Wav2Vec2Model, pretrained)
        self.pretrained = pretrained
        self.prosody = bool(settings["prosody"])
        self.normalize = bool(settings["normalize"])
        self.head_dim = int(settings["head_dim"])
        self.prosody_version = int(settings["prosody_version"])
        self.prosody_head_dim = int(settings["prosody_head_dim"]) if self.prosody else 0
        self.backbone_dropout = float(backbone_dropout)
        hidden = self.backbone.config.hidden_size
        stats = num_prosody_stats(self.prosody_version) if self.prosody else 0
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(2 * hidden + stats, self.head_dim),
            nn.GELU(),
        )
        # Fixed (not learnt) standardisation of the prosody statistics: buffers, not saved.
        mean, std = PROSODY_MEAN, PROSODY_STD
        if self.prosody_version >= 2:
            mean, std = mean + EXTRA_PROSODY_MEAN, std + EXTRA_PROSODY_STD
        self.register_buffer("prosody_mean", torch.tensor(mean), persistent=False)
        self.register_buffer("prosody_std", torch.tensor(std), persistent=False)
        self.classifier = nn.Linear(self.head_dim, NUM_EMOTIONS)
        self.intensity_head = nn.Linear(self.head_dim, 1)
        self.prosody_branch: nn.Module | None = None
        if self.prosody_head_dim > 0:
            self.prosody_branch = nn.Sequential(
                nn.Dropout(dropout),
                nn.Linear(stats, self.prosody_head_dim),
                nn.GELU(),
                nn.Linear(self.prosody_head_dim, NUM_EMOTIONS),
            )
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
        modules = {
            "head": self.head,
            "classifier": self.classifier,
            "intensity": self.intensity_head,
        }
        if self.prosody_branch is not None:
            modules["prosody_branch"] = self.prosody_branch
        return nn.ModuleDict(modules)

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
        use_backbone: bool = True,
    ) -> EmotionOutput:
        """Predict emotion logits and intensity for a batch of 16 kHz clips.

        Args:
            audio: Clips, zero-padded on the right when their lengths differ.
            lengths: Valid samples per clip; or give ``attention_mask`` (1 on valid samples,
                right padding), or neither when all clips fill the batch.
            attention_mask: Alternative to ``lengths``, as HF processors return it.
            use_backbone: False zeroes the pooled transformer summary (as modality dropout
                does in training), which shows what the prosody statistics alone predict;
                the transformer is then not run.

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
        cfg = self.backbone.config
        frames = conv_num_frames(lengths, cfg)  # [B]
        num_frames = int(conv_num_frames(raw.shape[1], cfg))
        frame_mask = lengths_to_mask(frames, num_frames)  # [B, T_a]
        if use_backbone:
            x = normalize_audio(raw, lengths) if self.normalize else raw
            hidden = self.backbone(
                input_values=x,
                attention_mask=None if sample_mask is None else sample_mask.long(),
            ).last_hidden_state  # [B, T_a, D]
            mean, std = masked_mean_std(hidden, frame_mask.to(hidden.dtype))
            summary = torch.cat([mean, std], dim=1)  # [B, 2D]
            if self.training and self.backbone_dropout > 0:
                keep = torch.rand(summary.shape[0], 1, device=summary.device)
                summary = summary * (keep >= self.backbone_dropout).to(summary.dtype)
        else:
            summary = raw.new_zeros(raw.shape[0], 2 * cfg.hidden_size)
        pooled = [summary]
        z = None
        if self.prosody:
            stats = self.prosody_features(raw, frame_mask)  # [B, K]
            z = (stats - self.prosody_mean) / self.prosody_std
            pooled.append(z)
        h = self.head(torch.cat(pooled, dim=1))
        logits = self.classifier(h)  # [B, 8]
        if self.prosody_branch is not None:
            logits = logits + self.prosody_branch(z)
        return EmotionOutput(
            logits=logits,
            intensity=torch.sigmoid(self.intensity_head(h)).squeeze(-1),
        )

    def prosody_features(
        self,
        audio: Tensor,  # [B, S], zero beyond each clip's length
        frame_mask: Tensor,  # [B, T_a] bool
    ) -> Tensor:  # [B, K], K = num_prosody_stats(prosody_version)
        """The raw (unstandardised) prosody statistics of this extractor's version."""
        stats = prosody_stats(audio, frame_mask)
        if self.prosody_version >= 2:
            stats = torch.cat([stats, extra_prosody_stats(audio, frame_mask)], dim=1)
        return stats

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
            "prosody_version": self.prosody_version,
            "prosody_head_dim": self.prosody_head_dim,
        }
        (folder / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")
        return folder
