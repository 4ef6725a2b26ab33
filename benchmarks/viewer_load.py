"""Viewer load check: parallel generate requests against a live `emotalk3d viewer` server.

Starts the real server (`emotalk3d viewer --port 0`, its own process, one torch thread) on
127.0.0.1, then fires `--requests` (default 20) generate requests at once, all different (every
example x emotion x intensity, so none is a cache hit), while a separate thread asks
/api/health every 0.2 s. Each request must either be accepted (202, then polled to "done") or
refused with 429 and a Retry-After header; the server must answer health throughout. Once all
are settled, a finished clip's frames are fetched and checked with the reference decoder, and
the first request is sent again to show the cache hit.

Runs once per queue bound in `--max-queue` (default: the server's default 4, and 20 = every
request accepted). Prints a table per run and ends with one line `RESULT {json}`.

    python benchmarks/viewer_load.py                # demo bundle when present
    python benchmarks/viewer_load.py --quick        # tiny untrained bundle, 6 requests
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# isort: off
from _common import REPO, bundle_for, machine, print_machine, print_result  # noqa: E402

# isort: on
import httpx  # noqa: E402

from emotalk3d.constants import EMOTIONS  # noqa: E402
from emotalk3d.viewer.encode import decode_frames  # noqa: E402

HEALTH_PERIOD_S = 0.2
START_TIMEOUT_S = 180.0


def start_server(bundle: Path, max_queue: int, log_path: Path) -> tuple[subprocess.Popen, str]:
    """`emotalk3d viewer` on a free 127.0.0.1 port; returns the process and its base URL."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "emotalk3d.cli", "viewer", "--checkpoint", str(bundle),
           "--port", "0", "--max-queue", str(max_queue), "--threads", "1"]  # fmt: skip
    log = log_path.open("w")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        if m:
            url = m.group(1)
            break
        if time.monotonic() > deadline:
            break
    else:
        raise RuntimeError(f"the viewer exited before printing its URL; see {log_path}")

    def drain() -> None:  # uvicorn's access log goes to stdout: keep the pipe from filling
        for line in proc.stdout:
            log.write(line)

    threading.Thread(target=drain, daemon=True).start()
    while time.monotonic() < deadline:  # the URL is printed before uvicorn listens
        try:
            if httpx.get(f"{url}/api/health", timeout=2.0).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the viewer did not answer /api/health in {START_TIMEOUT_S} s")


def server_peak_rss_mb(pid: int) -> float | None:
    """The server process's peak resident memory (VmHWM), MB."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class HealthProbe(threading.Thread):
    """Asks /api/health every HEALTH_PERIOD_S until stopped; records latencies and failures."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.stop = url, threading.Event()
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.max_queue_seen = 0

    def run(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while not self.stop.is_set():
                t0 = time.perf_counter()
                try:
                    r = client.get(f"{self.url}/api/health")
                    if r.status_code != 200 or r.json().get("status") != "ok":
                        self.failures.append(f"HTTP {r.status_code}")
                    else:
                        self.max_queue_seen = max(self.max_queue_seen, r.json()["queue"])
                        self.latencies.append(time.perf_counter() - t0)
                except httpx.HTTPError as exc:
                    self.failures.append(type(exc).__name__)
                self.stop.wait(HEALTH_PERIOD_S)


def one_request(url: str, form: dict[str, str], timeout_s: float) -> dict:
    """POST one generate request; poll it to the end when accepted."""
    t0 = time.perf_counter()
    out: dict = {"form": form}
    with httpx.Client(timeout=30.0) as client:
        try:
            r = client.post(f"{url}/api/clips", data=form)
        except httpx.HTTPError as exc:
            out.update(outcome="connection error", detail=type(exc).__name__)
            return out
        out["http"] = r.status_code
        if r.status_code == 429:
            out.update(outcome="refused 429", retry_after=r.headers.get("retry-after"))
            return out
        if r.status_code not in (200, 202):
            out.update(outcome=f"HTTP {r.status_code}", detail=r.text[:200])
            return out
        cid = r.json()["id"]
        out["id"] = cid
        while time.perf_counter() - t0 < timeout_s:
            info = client.get(f"{url}/api/clips/{cid}").json()
            if info["status"] in ("done", "error"):
                out.update(outcome=info["status"], seconds=time.perf_counter() - t0,
                           frames=info["num_frames"], error=info["error"])  # fmt: skip
                return out
            time.sleep(0.25)
        out.update(outcome="timeout")
        return out


def run_load(bundle: Path, max_queue: int, requests: int, timeout_s: float, log: Path) -> dict:
    proc, url = start_server(bundle, max_queue, log)
    try:
        with httpx.Client(timeout=10.0) as client:
            config = client.get(f"{url}/api/config").json()
        examples = [e["name"] for e in config["examples"]]
        if not examples:
            raise RuntimeError("the server lists no examples (examples/*.wav)")
        combos = itertools.product(examples, EMOTIONS[1:], ("1.0", "0.5"))
        forms = [
            {"example": ex, "emotion": emo, "intensity": level}
            for ex, emo, level in itertools.islice(combos, requests)
        ]
        probe = HealthProbe(url)
        probe.start()
        results: list[dict] = [{} for _ in forms]
        barrier = threading.Barrier(len(forms))

        def worker(i: int) -> None:
            barrier.wait()
            results[i] = one_request(url, forms[i], timeout_s)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(forms))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        time.sleep(2 * HEALTH_PERIOD_S)
        probe.stop.set()
        probe.join()
        with httpx.Client(timeout=30.0) as client:
            alive = client.get(f"{url}/api/health").json()["status"] == "ok"
            done = [r for r in results if r.get("outcome") == "done"]
            frames_ok = None
            cache_hit = None
            if done:
                data = client.get(f"{url}/api/clips/{done[0]['id']}/frames.bin").content
                frames_ok = decode_frames(data).count == done[0]["frames"]
                again = client.post(f"{url}/api/clips", data=done[0]["form"])
                cache_hit = again.status_code == 200 and again.json()["id"] == done[0]["id"]
        rss = server_peak_rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    outcomes: dict[str, int] = {}
    for r in results:
        outcomes[r.get("outcome", "missing")] = outcomes.get(r.get("outcome", "missing"), 0) + 1
    refused = [r for r in results if r.get("outcome") == "refused 429"]
    seconds = sorted(r["seconds"] for r in done)
    lat = sorted(probe.latencies)
    return {
        "max_queue": max_queue,
        "requests": len(forms),
        "outcomes": outcomes,
        "all_done_or_429": set(outcomes) <= {"done", "refused 429"},
        "retry_after_present": all(r.get("retry_after") for r in refused),
        "done_s_median": round(statistics.median(seconds), 2) if seconds else None,
        "done_s_max": round(seconds[-1], 2) if seconds else None,
        "frames_per_clip": done[0]["frames"] if done else None,
        "wall_s": round(wall, 2),
        "health_checks": len(lat) + len(probe.failures),
        "health_failures": len(probe.failures),
        "health_ms_median": round(1000 * statistics.median(lat), 1) if lat else None,
        "health_ms_max": round(1000 * lat[-1], 1) if lat else None,
        "max_queue_seen": probe.max_queue_seen,
        "alive_after": alive,
        "frames_bin_ok": frames_ok,
        "cache_hit_after": cache_hit,
        "server_peak_rss_mb": round(rss, 0) if rss else None,
    }


def print_table(rows: list[dict]) -> None:
    cols = [
        ("max_queue", "max queue"), ("requests", "requests"), ("done", "done"),
        ("refused", "429"), ("other", "other"), ("done_s_median", "done s (median)"),
        ("done_s_max", "done s (max)"), ("health_checks", "health checks"),
        ("health_failures", "health fails"), ("health_ms_median", "health ms (median)"),
        ("health_ms_max", "health ms (max)"), ("server_peak_rss_mb", "server peak RSS MB"),
    ]  # fmt: skip
    print("| " + " | ".join(c[1] for c in cols) + " |")
    print("|" + "---:|" * len(cols))
    for row in rows:
        o = row["outcomes"]
        view = dict(row, done=o.get("done", 0), refused=o.get("refused 429", 0),
                    other=row["requests"] - o.get("done", 0) - o.get("refused 429", 0))  # fmt: skip
        print("| " + " | ".join(str(view[c[0]]) for c in cols) + " |")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default=None, help="bundle folder (default: demo, else untrained)")
    p.add_argument("--requests", type=int, default=None, help="parallel requests (default 20)")
    p.add_argument("--max-queue", type=int, nargs="+", default=None, help="queue bounds to run")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per request at most")
    p.add_argument("--quick", action="store_true", help="tiny untrained bundle, 6 requests")
    args = p.parse_args(argv)
    requests = args.requests or (6 if args.quick else 20)
    bounds = args.max_queue or ([2] if args.quick else [4, requests])
    bundle, kind = bundle_for(args.quick, args.bundle)
    info = machine()
    print_machine(f"viewer_load: {requests} parallel requests, bundle {kind} ({bundle})", info)
    rows = []
    for bound in bounds:
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"viewer_load_q{bound}.log"
        row = run_load(bundle, bound, requests, args.timeout, log)
        rows.append(row)
        print(f"\nmax_queue={bound}: {row}", flush=True)
    print()
    print_table(rows)
    ok = all(r["all_done_or_429"] and r["alive_after"] and not r["health_failures"] for r in rows)
    result = {"benchmark": "viewer_load", "bundle": kind, "ok": ok, "runs": rows, "machine": info}
    print_result(result)
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
