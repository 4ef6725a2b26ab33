"""retain_freed_memory: glibc's thresholds raised once, switchable off by the environment."""

from __future__ import annotations

import os
import sys

import pytest

from emotalk3d.inference import memory


def test_applies_once_on_glibc_and_the_environment_turns_it_off(monkeypatch):
    monkeypatch.setattr(memory, "_applied", None)
    monkeypatch.setenv("EMOTALK3D_KEEP_MALLOC", "1")
    assert memory.retain_freed_memory() is False
    assert memory.retain_freed_memory() is False  # decided once per process
    monkeypatch.setattr(memory, "_applied", None)
    monkeypatch.delenv("EMOTALK3D_KEEP_MALLOC")
    if not sys.platform.startswith("linux"):
        pytest.skip("mallopt is glibc's (Linux)")
    assert memory.retain_freed_memory() is True
    assert memory._applied is True


def test_talking_head_applies_it(talking_head):
    if not sys.platform.startswith("linux"):
        pytest.skip("mallopt is glibc's (Linux)")
    # TalkingHead() asked for it, and on glibc it took (unless the environment turns it off)
    assert memory._applied is (os.environ.get("EMOTALK3D_KEEP_MALLOC") != "1")
