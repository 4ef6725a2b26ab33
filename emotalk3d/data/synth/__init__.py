"""The synthetic talking-head dataset (DESIGN.md section 4).

- `sentences`: the sentence list and its train/val/test split by sentence.
- `speech`: espeak-ng speech with emotional prosody and phoneme times.
- `visemes`, `motion`: phonemes to ARKit weights, emotions, blinks.
- `appearance`, `scene`, `raster`: subject appearance, proxies and the independent renderer.
- `preview`: contact sheets.
- `generate`: `generate_dataset(...)`, which writes the dataset format v1 (docs/dataset.md).
"""
