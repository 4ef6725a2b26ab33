"""HuBERT speech features through ``transformers.HubertModel`` (DESIGN.md sections 1-2).

The audio encoder of EmoTalk3D's speech-to-geometry stage: 16 kHz mono audio in, 50 Hz
HuBERT features out. The model is HF's ``HubertModel``, wrapped (never subclassed or copied):
this module adds per-clip input normalisation, configurable freezing (FaceXHuBERT's recipe by
default) and the choice of output layer, plus windowed encoding for long clips.

Frame convention: the standard HuBERT convolution stack has total stride 320 and receptive
field 400 samples, so S samples at 16 kHz give ``floor((S - 400) / 320) + 1`` frames at 50 Hz
(:func:`hubert_num_frames`). Motion runs at 25 fps with
``emotalk3d.audio.load.num_motion_frames(S) = ceil(S * 25 / 16000)`` frames; S2GNet maps the
50 Hz features to exactly that many frames (pairs of frames when the ratio is 2, linear
interpolation otherwise). The two counts differ by design: never assume T_a == 2 T.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from transformers import HubertConfig, HubertModel, PretrainedConfig, PreTrainedModel

from emotalk3d.audio.load import SAMPLE_RATE

HubertSize = Literal["tiny", "small", "base"]
FreezeMode = Literal["none", "feature_extractor", "facexhubert", "all"]

DROPOUT_KEYS = ("hidden_dropout", "attention_dropout", "activation_dropout")
NORM_EPS = 1e-7  # as Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm


class PretrainedNotAvailableError(OSError):
    """A ``pretrained`` hub id or folder could not be loaded (no network, typo, no cache)."""


def hubert_config(size: HubertSize) -> HubertConfig:
    """A HubertConfig for a randomly initialised model of a named size.

    Args:
        size: ``tiny`` (hidden 32, 2 layers: tests), ``small`` (hidden 256, 4 layers,
            convolutions widening from 32 to 128 channels: the CPU demo), or ``base`` (the
            standard 768-wide, 12-layer HuBERT Base, as facebook/hubert-base-ls960).

    Returns:
        The config. tiny and small use layer-normalised convolutions (exact for padded
        batches and windowed encoding), no LayerDrop, and the standard 400/320 conv stack.
    """
    if size == "base":
        return HubertConfig()
    kernels, strides = (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)  # 400-sample field, hop 320
    if size == "tiny":
        return HubertConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            conv_dim=(32,) * 7,
            conv_kernel=kernels,
            conv_stride=strides,
            feat_extract_norm="layer",
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=4,
            layerdrop=0.0,
            mask_time_prob=0.0,
        )
    if size == "small":
        return HubertConfig(
            hidden_size=256,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=1024,
            conv_dim=(32, 32, 64, 64, 128, 128, 128),
            conv_kernel=kernels,
            conv_stride=strides,
            feat_extract_norm="layer",
            num_conv_pos_embeddings=64,
            num_conv_pos_embedding_groups=8,
            layerdrop=0.0,
            mask_time_prob=0.05,
        )
    raise ValueError(f"unknown size {size!r}; expected one of: tiny, small, base")


def conv_num_frames(num_samples: Tensor | int, config: PretrainedConfig) -> Tensor | int:
    """Frames a conv feature stack (HuBERT/wav2vec2 config) gives for ``num_samples`` samples.

    Standard stack: ``floor((S - 400) / 320) + 1`` (0 when S < 400).

    Args:
        num_samples: Sample counts, an int or an integer tensor [B].
        config: A config with ``conv_kernel`` and ``conv_stride``.

    Returns:
        Frame counts T_a of the same kind as ``num_samples``.
    """
    frames = num_samples
    for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
        if isinstance(frames, Tensor):
            frames = torch.div(frames - kernel, stride, rounding_mode="floor") + 1
            frames = frames.clamp(min=0)
        else:
            frames = max((frames - kernel) // stride + 1, 0)
    return frames


def hubert_num_frames(num_samples: int) -> int:
    """50 Hz frames of the standard HuBERT conv stack: ``floor((S - 400) / 320) + 1``."""
    return max((num_samples - 400) // 320 + 1, 0)


def lengths_to_mask(
    lengths: Tensor,  # [B]
    max_len: int,
) -> Tensor:  # [B, S] bool
    """Boolean mask, True where an index is below the item's length."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def normalize_audio(
    audio: Tensor,  # [B, S]
    lengths: Tensor | None = None,  # [B]
    eps: float = NORM_EPS,
) -> Tensor:  # [B, S]
    """Zero-mean unit-variance per clip over its valid samples; padding set to 0.

    The same maths as ``Wav2Vec2FeatureExtractor`` with ``do_normalize=True``:
    ``(x - mean) / sqrt(var + 1e-7)`` with the population variance.
    """
    if lengths is None:
        mean = audio.mean(dim=1, keepdim=True)
        var = audio.var(dim=1, keepdim=True, unbiased=False)
        return (audio - mean) / torch.sqrt(var + eps)
    mask = lengths_to_mask(lengths, audio.shape[1]).to(audio.dtype)
    count = lengths.to(audio.dtype).clamp(min=1)[:, None]
    mean = (audio * mask).sum(dim=1, keepdim=True) / count
    var = (((audio - mean) * mask) ** 2).sum(dim=1, keepdim=True) / count
    return (audio - mean) / torch.sqrt(var + eps) * mask


def check_audio_batch(
    audio: Tensor,  # [B, S]
    lengths: Tensor | None,  # [B]
    min_samples: int,
    who: str,
) -> tuple[Tensor, Tensor | None]:  # [B, S], [B]
    """Validate a batch of 16 kHz audio and its lengths (public-boundary check)."""
    if not isinstance(audio, Tensor) or audio.ndim != 2 or not audio.is_floating_point():
        got = f"{tuple(audio.shape)} {audio.dtype}" if isinstance(audio, Tensor) else type(audio)
        raise ValueError(
            f"{who} expects float audio [B, S] (16 kHz mono, see emotalk3d.audio.load), got "
            f"{got}; add a batch axis with audio[None] for one clip"
        )
    if lengths is not None:
        lengths = torch.as_tensor(lengths, device=audio.device)
        if lengths.shape != (audio.shape[0],) or lengths.is_floating_point():
            raise ValueError(
                f"{who}: lengths must be integer sample counts [B={audio.shape[0]}], got "
                f"{tuple(lengths.shape)} {lengths.dtype}"
            )
        if (lengths > audio.shape[1]).any() or (lengths < 0).any():
            raise ValueError(
                f"{who}: lengths must lie in [0, S={audio.shape[1]}], got {lengths.tolist()}"
            )
        short = int(lengths.min())
    else:
        short = audio.shape[1]
    if short < min_samples:
        raise ValueError(
            f"{who} needs at least {min_samples} samples ({min_samples / SAMPLE_RATE * 1000:.0f} "
            f"ms at 16 kHz) per clip for one feature frame, got {short}; pad or skip the clip"
        )
    return audio, lengths


def load_pretrained(
    model_class: type[PreTrainedModel], pretrained: str, **kwargs
) -> PreTrainedModel:
    """``model_class.from_pretrained`` with a clear error when the weights are unavailable.

    ``pretrained`` is a local folder (from ``save_pretrained``) when such a folder exists,
    else a Hugging Face hub id. ``HF_HUB_OFFLINE=1`` in the environment (read at call time)
    makes hub ids resolve from the local cache only, so an offline machine fails fast.

    Raises:
        PretrainedNotAvailableError: The folder is not a saved model, or the hub id could not
            be downloaded (no network, unknown id, not in the cache).
    """
    kwargs.setdefault("dtype", torch.float32)  # our code runs in float32 (weights may be f16)
    path = Path(pretrained).expanduser()
    if path.is_dir():
        try:
            return model_class.from_pretrained(str(path), **kwargs)
        except (OSError, ValueError) as exc:
            raise PretrainedNotAvailableError(
                f"could not load {model_class.__name__} from the local folder {path}: {exc}. "
                "The folder must hold config.json and model weights written by save_pretrained."
            ) from exc
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    if offline:
        kwargs.setdefault("local_files_only", True)
    try:
        return model_class.from_pretrained(pretrained, **kwargs)
    except (OSError, ValueError) as exc:
        raise PretrainedNotAvailableError(
            f"could not load {model_class.__name__} {pretrained!r}: no local folder of that name "
            f"exists and the model could not be downloaded from the Hugging Face hub "
            f"{'(HF_HUB_OFFLINE is set) ' if offline else ''}({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). On a machine with network run "
            f"`{model_class.__name__}.from_pretrained({pretrained!r}).save_pretrained(DIR)`, "
            "copy DIR here and pass pretrained=DIR; or use pretrained=None with a size "
            "(tiny, small, base) for a randomly initialised model."
        ) from exc


class HubertEncoder(nn.Module):
    """HuBERT audio encoder of EmoTalk3D (DESIGN.md section 2, "Audio encoder").

    Wraps ``transformers.HubertModel``: per-clip normalisation, FaceXHuBERT-style freezing,
    and a selectable output (last layer, one layer, or a learnt weighted sum of layers).
    Features come at 50 Hz: ``[B, T_a, D]`` with ``D = output_dim``.
    """

    def __init__(
        self,
        pretrained: str | None = None,
        size: HubertSize = "tiny",
        freeze: FreezeMode | int | list[str] = "facexhubert",
        layer: int | Literal["last", "weighted"] = "last",
        normalize: bool = True,
        dropout: float | None = None,
    ) -> None:
        """Build or load the encoder.

        Args:
            pretrained: Hub id (e.g. ``facebook/hubert-base-ls960``), a local folder written by
                ``save_pretrained``, or None for a randomly initialised model of ``size``.
            size: Model size when ``pretrained`` is None: tiny (tests), small (CPU demo) or
                base (standard HuBERT Base). Ignored when ``pretrained`` is given.
            freeze: Which parameters get no gradient. ``none``; ``feature_extractor`` (the CNN
                feature encoder); ``facexhubert`` (CNN, feature projection and the first two
                transformer layers, as FaceXHuBERT); ``all``; an int n (CNN, projection and
                the first n transformer layers); or a list of parameter-name prefixes such as
                ``["feature_extractor", "encoder.layers.0"]``.
            layer: Output: ``last`` (last_hidden_state), an int k (``hidden_states[k]``: 0 is
                the input to the first transformer layer, k the output of layer k; negative
                counts from the end), or ``weighted`` (softmax-weighted sum of all hidden
                states with learnt weights, initialised uniform).
            normalize: Normalise each clip to zero mean and unit variance (as
                Wav2Vec2FeatureExtractor's do_normalize) before the model.
            dropout: The transformer's hidden, attention and activation dropout (active in
                train mode, frozen layers included); None keeps the config's (0.1).
        """
        super().__init__()
        overrides = {}
        if dropout is not None:
            if not 0.0 <= dropout < 1.0:
                raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
            overrides = {k: float(dropout) for k in DROPOUT_KEYS}
        if pretrained is None:
            config = hubert_config(size)
            config.update(overrides)
            self.model = HubertModel(config)
        else:
            self.model = load_pretrained(HubertModel, pretrained, **overrides)
        self.pretrained = pretrained
        self.normalize = normalize
        num_states = self.model.config.num_hidden_layers + 1
        if isinstance(layer, int) and not isinstance(layer, bool):
            if not -num_states <= layer < num_states:
                raise ValueError(
                    f"layer must index the {num_states} hidden states (0..{num_states - 1} or "
                    f"negative), got {layer}"
                )
        elif layer not in ("last", "weighted"):
            raise ValueError(f"layer must be 'last', 'weighted' or an int, got {layer!r}")
        self.layer = layer
        if layer == "weighted":
            self.layer_weights = nn.Parameter(torch.zeros(num_states))
        self.frozen_prefixes = freeze_prefixes(freeze, self.model.config.num_hidden_layers)
        apply_freeze(self.model, self.frozen_prefixes)

    @property
    def config(self) -> HubertConfig:
        """The wrapped model's HubertConfig."""
        return self.model.config

    @property
    def output_dim(self) -> int:
        """Feature size D."""
        return self.model.config.hidden_size

    @property
    def min_samples(self) -> int:
        """Shortest clip giving one feature frame (400 samples for the standard stack)."""
        n = 1
        for kernel, stride in zip(
            reversed(self.config.conv_kernel), reversed(self.config.conv_stride), strict=True
        ):
            n = (n - 1) * stride + kernel
        return n

    def num_frames(self, num_samples: Tensor | int) -> Tensor | int:
        """Feature frames T_a for clips of ``num_samples`` samples (int or tensor [B])."""
        return conv_num_frames(num_samples, self.config)

    def forward(
        self,
        audio: Tensor,  # [B, S]
        lengths: Tensor | None = None,  # [B]
    ) -> Tensor:  # [B, T_a, D]
        """Encode 16 kHz mono audio to 50 Hz features.

        Args:
            audio: Batch of clips, zero-padded on the right when lengths differ.
            lengths: Valid samples per clip; None when all clips fill the batch. Frames past
                ``num_frames(lengths)`` are padding; the model masks them in attention.

        Returns:
            Features [B, T_a, D] with T_a = num_frames(S).
        """
        audio, lengths = check_audio_batch(audio, lengths, self.min_samples, "HubertEncoder")
        return self._encode(audio, lengths, normalize=self.normalize)

    def _encode(
        self,
        audio: Tensor,  # [B, S]
        lengths: Tensor | None,  # [B]
        normalize: bool,
    ) -> Tensor:  # [B, T_a, D]
        return self.combine(self._states(audio, lengths, normalize))

    def hidden_states(
        self,
        audio: Tensor,  # [B, S]
        lengths: Tensor | None = None,  # [B]
    ) -> Tensor:  # [K, B, T_a, D]
        """The hidden states the output is made of, before `combine`.

        K is all L + 1 states for ``layer="weighted"`` and 1 (the chosen state) otherwise, so
        ``combine(hidden_states(audio, lengths)) == forward(audio, lengths)``. With a fully
        frozen model these depend on the audio alone (in eval mode), which lets training
        compute them once per clip (`S2GModule`'s ``feature_cache``) while the layer mix
        keeps learning.
        """
        audio, lengths = check_audio_batch(audio, lengths, self.min_samples, "HubertEncoder")
        return self._states(audio, lengths, normalize=self.normalize)

    def combine(
        self,
        states: Tensor,  # [K, B, T_a, D] from hidden_states
    ) -> Tensor:  # [B, T_a, D]
        """The encoder output from its hidden states: the learnt softmax mix for
        ``layer="weighted"``, the one state otherwise."""
        if self.layer != "weighted":
            return states[0]
        if states.shape[0] != self.layer_weights.shape[0]:
            raise ValueError(
                f"combine needs the {self.layer_weights.shape[0]} hidden states of "
                f"hidden_states(), got {states.shape[0]}"
            )
        weights = torch.softmax(self.layer_weights, dim=0)
        return torch.einsum("k,kbtd->btd", weights.to(states.dtype), states)

    def _states(
        self,
        audio: Tensor,  # [B, S]
        lengths: Tensor | None,  # [B]
        normalize: bool,
    ) -> Tensor:  # [K, B, T_a, D]
        if normalize:
            audio = normalize_audio(audio, lengths)
        mask = None if lengths is None else lengths_to_mask(lengths, audio.shape[1]).long()
        need_all = self.layer != "last"
        out = self.model(input_values=audio, attention_mask=mask, output_hidden_states=need_all)
        if self.layer == "last":
            return out.last_hidden_state[None]
        if self.layer == "weighted":
            return torch.stack(out.hidden_states, dim=0)  # [L+1, B, T_a, D]
        return out.hidden_states[self.layer][None]

    @torch.no_grad()
    def encode_long(
        self,
        audio: Tensor,  # [S] or [B, S]
        chunk_seconds: float = 20.0,
        overlap_seconds: float = 5.0,
    ) -> Tensor:  # [T_a, D] or [B, T_a, D]
        """Encode a long clip in overlapping windows with bounded memory (inference only).

        The clip is normalised as a whole, then cut into windows whose starts are multiples
        of the conv hop (320 samples), so every window frame is a frame of the one-pass
        result. Each window keeps its central ``chunk_seconds`` of frames; ``overlap_seconds``
        of context on each side is computed and dropped. Memory is that of one window of
        ``chunk_seconds + 2 * overlap_seconds``.

        Exactness: the CNN features and the convolutional position embedding are local, so
        with ``overlap_seconds`` beyond their reach (about 0.7 s for base: a 128-frame
        kernel) the input to the transformer equals the one-pass one exactly (for models with
        layer-normalised convolutions: tiny, small; group-normalised ones such as HuBERT Base
        normalise over each window, a small change). Self-attention is global, so deeper
        layers see only the window's context: the stitched result approximates one pass,
        closer with longer windows, and is identical when the clip fits one window.

        Args:
            audio: One clip [S] or a batch of equal-length clips [B, S] at 16 kHz.
            chunk_seconds: Seconds of output each window contributes.
            overlap_seconds: Seconds of context on each side of a window.

        Returns:
            Features [T_a, D] (or [B, T_a, D]) with T_a = num_frames(S), as one pass gives.
        """
        single = audio.ndim == 1
        batch = audio[None] if single else audio
        batch, _ = check_audio_batch(batch, None, self.min_samples, "HubertEncoder.encode_long")
        hop = 1
        for stride in self.config.conv_stride:
            hop *= stride
        field = self.min_samples
        if chunk_seconds <= 0 or overlap_seconds < 0:
            raise ValueError(
                f"need chunk_seconds > 0 and overlap_seconds >= 0, got {chunk_seconds}, "
                f"{overlap_seconds}"
            )
        step = max(1, round(chunk_seconds * SAMPLE_RATE / hop))  # frames kept per window
        ctx = round(overlap_seconds * SAMPLE_RATE / hop)  # context frames per side
        if self.normalize:
            batch = normalize_audio(batch)
        total = int(self.num_frames(batch.shape[1]))
        pieces = []
        for start in range(0, total, step):
            stop = min(start + step, total)
            first = max(start - ctx, 0)
            last = min(stop + ctx, total)  # exclusive
            window = batch[:, first * hop : (last - 1) * hop + field]
            feats = self._encode(window, None, normalize=False)
            pieces.append(feats[:, start - first : stop - first])
        out = torch.cat(pieces, dim=1)
        assert out.shape[1] == total, (out.shape, total)
        return out[0] if single else out


def freeze_prefixes(freeze: FreezeMode | int | list[str], num_layers: int) -> list[str]:
    """Parameter-name prefixes (of a HubertModel/Wav2Vec2Model) that a freeze spec freezes."""
    base = ["feature_extractor", "feature_projection"]
    if isinstance(freeze, list | tuple):
        return [str(p) for p in freeze]
    if isinstance(freeze, int) and not isinstance(freeze, bool):
        if not 0 <= freeze <= num_layers:
            raise ValueError(f"freeze as an int counts layers 0..{num_layers}, got {freeze}")
        return base + [f"encoder.layers.{i}." for i in range(freeze)]
    if freeze == "none":
        return []
    if freeze == "feature_extractor":
        return ["feature_extractor"]
    if freeze == "facexhubert":
        return base + [f"encoder.layers.{i}." for i in range(min(2, num_layers))]
    if freeze == "all":
        return [""]
    raise ValueError(
        f"unknown freeze {freeze!r}; expected none, feature_extractor, facexhubert, all, an int "
        "(layers frozen after the CNN and projection) or a list of parameter-name prefixes"
    )


def apply_freeze(model: nn.Module, prefixes: list[str]) -> None:
    """Set requires_grad False on parameters whose names start with a prefix, True elsewhere."""
    names = [n for n, _ in model.named_parameters()]
    for prefix in prefixes:
        if prefix and not any(n.startswith(prefix) for n in names):
            raise ValueError(f"freeze prefix {prefix!r} matches no parameter of the model")
    for name, param in model.named_parameters():
        param.requires_grad = not any(name.startswith(p) for p in prefixes)
    extractor = getattr(model, "feature_extractor", None)
    if extractor is not None and not any(p.requires_grad for p in extractor.parameters()):
        extractor._freeze_parameters()  # HF: skips its gradient-checkpointing input hook
