"""The web client's own unit tests (viewer/web/test: layout decoders, half floats, the depth
sort, the frame clock and the frame store's fetch order and byte budget), run by Node's test
runner through `npm test` so that `make test` covers them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[2] / "viewer" / "web"


def test_web_client_unit_tests_pass():
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("node/npm are not installed (bash scripts/install-system-deps.sh)")
    if not (WEB / "node_modules" / "esbuild").is_dir():
        pytest.fail(f"{WEB}/node_modules is missing: run `make web` (npm ci in viewer/web)")
    result = subprocess.run(
        [npm, "test"], cwd=WEB, capture_output=True, text=True, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"npm test failed:\n{output[-4000:]}"
    passed = re.search(r"^# pass (\d+)$", output, re.MULTILINE)
    failed = re.search(r"^# fail (\d+)$", output, re.MULTILINE)
    assert passed and failed, f"no test summary in the output:\n{output[-2000:]}"
    assert int(failed.group(1)) == 0 and int(passed.group(1)) >= 10, output[-2000:]
