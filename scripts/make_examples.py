"""Write the example speech clips in examples/ (espeak-ng through emotalk3d's synthesizer).

    .venv/bin/python scripts/make_examples.py [--out examples]

The clips are short sentences that are not in the synthetic training corpus
(emotalk3d/data/synth/sentences.py), spoken with the emotional prosody of the synthetic
dataset; they are 16 kHz mono 16-bit WAV files. The same command gives the same bytes on the
same espeak-ng version.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from emotalk3d.data.synth.speech import synthesize

# name -> (text, emotion the clip is spoken with, intensity)
EXAMPLES: dict[str, tuple[str, str, float]] = {
    "hello": ("Hello there. I am a talking head made of tiny Gaussians.", "neutral", 0.0),
    "good_news": ("We won the match, and everybody is coming to the party.", "happy", 1.0),
    "complaint": ("Nobody told me the meeting was moved to Monday morning.", "angry", 1.0),
}


def write_examples(out: Path) -> list[Path]:
    """Synthesize every clip of `EXAMPLES` into `out` (atomically, one file at a time)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (text, emotion, intensity) in EXAMPLES.items():
        speech = synthesize(text, emotion=emotion, intensity=intensity, seed=0)
        audio = np.clip(speech.audio, -1.0, 1.0)  # [S]
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".wav", dir=out)
        os.close(fd)
        sf.write(tmp, audio, speech.sample_rate, subtype="PCM_16")
        path = out / f"{name}.wav"
        os.replace(tmp, path)
        os.chmod(path, 0o644)
        print(f"{path}: {len(audio) / speech.sample_rate:.2f} s, {emotion} - {text!r}")
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "examples"
    )
    write_examples(parser.parse_args().out)


if __name__ == "__main__":
    main()
