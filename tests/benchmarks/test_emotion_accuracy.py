"""benchmarks/emotion_accuracy.py: its scoring by hand, and a --quick run on a tiny checkpoint."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from emotalk3d.cli import lightning_main

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "emotion_accuracy.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("emotion_accuracy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    yield module
    torch.set_num_threads(threads)  # main() sets --threads (default 1)


def test_score_by_hand(bench):
    labels = torch.tensor([0, 0, 1, 6, 6])
    predicted = torch.tensor([0, 1, 1, 6, 2])
    out = bench.score(predicted, torch.tensor([0.0, 0.1, 0.5, 1.0, 0.5]), labels, torch.zeros(5))
    assert out["accuracy"] == pytest.approx(3 / 5) and out["correct"] == 3
    assert out["per_class"] == {"neutral": 0.5, "angry": 1.0, "sad": 0.5}  # classes present
    assert out["intensity_mae"] == pytest.approx(2.1 / 5)
    assert out["confusion"][0][1] == 1 and out["confusion"][6][2] == 1
    assert sum(map(sum, out["confusion"])) == 5


def test_quick_run_on_a_tiny_checkpoint(bench, tiny_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    lightning_main(
        [
            "fit",
            "-c",
            "configs/tiny/emotion.yaml",
            f"--data.init_args.data_dir={tiny_dataset}",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.logger=false",
            "--trainer.max_steps=1",
            "--trainer.enable_progress_bar=false",
        ]
    )
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    result = bench.main(["--data", str(tiny_dataset), "--checkpoint", str(ckpt), "--quick"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last[len("RESULT ") :]) == json.loads(json.dumps(result))
    assert result["clips"] == 2 and result["emotion_train_steps"] == 1
    assert result["emotion_correct"] == round(result["emotion_accuracy"] * 2)
    assert sum(map(sum, result["emotion_confusion"])) == 2
    assert 0.0 <= result["prosody_only_accuracy"] <= 1.0
    with pytest.raises(SystemExit, match="lightning fit -c configs/emotion.yaml"):
        bench.main(["--data", str(tiny_dataset), "--checkpoint", str(tmp_path / "missing.ckpt")])


def test_quick_run_on_a_bundle_scores_its_extractor(bench, tiny_dataset, capsys):
    from emotalk3d.inference.checkpoint import DEMO_BUNDLE, load_bundle

    if not (DEMO_BUNDLE / "manifest.json").is_file():
        pytest.skip(f"the demo bundle {DEMO_BUNDLE} is not there (it is committed)")
    result = bench.main(["--data", str(tiny_dataset), "--checkpoint", str(DEMO_BUNDLE), "--quick"])
    assert "(a bundle)" in capsys.readouterr().out
    assert result["clips"] == 2 and result["emotion_train_steps"] is None
    # the bundle's own extractor, as TalkingHead loads it, gives the same decisions
    from emotalk3d.data.speech_data import EmotionDataModule, collate_clips

    clips = EmotionDataModule(str(tiny_dataset), max_seconds=None).clips("test")[:2]
    batch = collate_clips(clips)
    with torch.no_grad():
        out = load_bundle(DEMO_BUNDLE).extractor(batch["audio"], batch["audio_lengths"])
    want = int((out.logits.argmax(-1) == batch["label"]).sum())
    assert result["emotion_correct"] == want
