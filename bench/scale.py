#!/usr/bin/env python3
"""Many runs at once on one project: N processes of aiven-ephemeral against one standalone
sandbox with a provisioning delay D and the API's rate limit, as N CI jobs sharing one
token would be.

    python3 bench/scale.py                      # both scenarios, N = 20, D = 20 s
    python3 bench/scale.py --only dedicated --runs 10 --out /tmp/scale.md

Each scenario: N directories with the same three-service manifest (pg + valkey + kafka),
`up -q` started in all N at once, then `down -q` in all N at once. Reported: `up` wall
time p50/p95/max and exit codes, `down` wall time and exit codes, API requests per run
(each process's own count, logged at -v), 429s, and what is left after the downs:
services for the dedicated runs, tenancies (lease tags, users, roles, databases, topics)
for the shared ones, whose services must still be RUNNING.

Three scenarios, each in a sandbox of its own: dedicated runs on fresh runners (each
process with an empty disk cache of its own: the project's default cloud, its CA and
the prices are read), the same with one cache an earlier run filled (jobs on one
runner, or a cache kept between jobs), and shared runs on a warm pool (one run first
creates the shared services, as the first job of the day would; not measured). Each
measured phase starts as the sandbox's rate-limit window turns over, with the whole
budget, so that runs of the benchmark compare.

Needs what bench/run.py needs (PostgreSQL and redis-server for the shared pool).
"""

import argparse
import datetime as dt
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import BIN, PROJECT, ROOT, Sandbox, env_for, machine, parse_duration, replace_section, shared_leftovers, three_services  # noqa: E402

import run  # noqa: E402

# Another build of ours (a debug one, say) for the sandbox and every run.
BIN = run.BIN = os.environ.get("AE_BIN", BIN)
RATE = "rate_limit: {requests: 120, per: 60s}\n"
KINDS = ["dedicated-cold", "dedicated-warm", "shared"]
COUNT = re.compile(r"(\d+) API requests?, (\d+) rate-limited")


def percentile(values, p):
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def all_at_once(sandbox, dirs, args, cache):
    """Runs `aiven-ephemeral ARGS` in every dir at once: (wall, code, requests, 429s) each."""
    results = [None] * len(dirs)
    env = dict(env_for(sandbox), RUST_LOG="aiven_ephemeral=info")
    start = threading.Event()

    def one(i, d):
        start.wait()
        t0 = time.monotonic()
        # No cache given: each process has its own, as jobs on fresh runners do.
        own = dict(env, XDG_CACHE_HOME=cache or os.path.join(d, ".cache"))
        p = subprocess.run([BIN] + args, cwd=d, env=own, capture_output=True, text=True)
        wall = time.monotonic() - t0
        counts = COUNT.findall(p.stderr)
        reqs, limited = (int(counts[-1][0]), int(counts[-1][1])) if counts else (None, None)
        if p.returncode != 0:
            with open(os.path.join(d, f"failed-{args[0]}.log"), "w") as f:
                f.write(p.stderr)
        results[i] = {"wall": wall, "code": p.returncode, "requests": reqs, "limited": limited}

    threads = [threading.Thread(target=one, args=(i, d)) for i, d in enumerate(dirs)]
    for t in threads:
        t.start()
    start.set()
    wall_start = time.monotonic()
    for t in threads:
        t.join()
    return results, time.monotonic() - wall_start


def summary(results, wall):
    walls = [r["wall"] for r in results]
    reqs = [r["requests"] for r in results if r["requests"] is not None]
    return {
        "wall": wall,
        "p50": statistics.median(walls),
        "p95": percentile(walls, 95),
        "max": max(walls),
        "codes": sorted({r["code"] for r in results}),
        "failed": sum(r["code"] != 0 for r in results),
        "requests_mean": statistics.mean(reqs) if reqs else None,
        "requests_max": max(reqs) if reqs else None,
        "limited": sum(r["limited"] or 0 for r in results),
    }


def fresh_window(sandbox):
    """Waits until the sandbox's rate-limit window turns over, so that every measured
    phase starts with the whole budget (one request spent to read the window)."""
    req = urllib.request.Request(f"{sandbox.url}/v1/project/{PROJECT}")
    req.add_header("authorization", f"aivenv1 {sandbox.token}")
    try:
        with urllib.request.urlopen(req) as r:
            reset = int(r.headers["x-ratelimit-reset"])
    except urllib.error.HTTPError as e:
        reset = int(e.headers["x-ratelimit-reset"])
    time.sleep(reset + 0.2)


def scenario(kind, runs, delay_text):
    """kind: dedicated-cold (an empty price cache, as on a fresh runner), dedicated-warm
    (the cache filled by an earlier run), shared (a warm pool and cache)."""
    delay = parse_duration(delay_text)
    shared = kind == "shared"
    cache = tempfile.mkdtemp(prefix="ae-scale-cache-")
    sandbox = Sandbox(delay_text, backends="auto" if shared else "simulated", extra=RATE)
    try:
        dirs = [tempfile.mkdtemp(prefix=f"ae-scale-{i}-") for i in range(runs)]
        for d in dirs:
            three_services(d, shared)
        if kind != "dedicated-cold":
            warm = tempfile.mkdtemp(prefix="ae-scale-warm-")
            three_services(warm, shared)
            print(f"scale: one run first, to warm the cache{' and the pool' if shared else ''} (not measured)", flush=True)
            for cmd in (["up", "-q", "--run-id", "warm"], ["down", "-q"]):
                subprocess.run([BIN] + cmd, cwd=warm, env=dict(env_for(sandbox), XDG_CACHE_HOME=cache), check=True)
        fresh_window(sandbox)
        sandbox.clear()
        print(f"scale: {runs} {kind} runs, up at once (D = {delay:g} s)", flush=True)
        cache = None if kind == "dedicated-cold" else cache
        up, up_wall = all_at_once(sandbox, dirs, ["up", "-q"], cache)
        up_429 = sum(r["status"] == 429 for r in sandbox.requests())
        fresh_window(sandbox)
        sandbox.clear()
        print(f"scale: {runs} {kind} runs, down at once", flush=True)
        down, down_wall = all_at_once(sandbox, dirs, ["down", "-q"], cache)
        down_429 = sum(r["status"] == 429 for r in sandbox.requests())
        if shared:
            # The check reads through the API too: with a budget of its own.
            fresh_window(sandbox)
            left = []
            for d in dirs:
                with open(os.path.join(d, ".aiven-ephemeral", "state.json")) as f:
                    left += shared_leftovers(sandbox, json.load(f)["run_id"])
        else:
            # Whatever a down could not confirm would still be there after the API's own wait.
            time.sleep(2)
            left = [s["service_name"] for s in sandbox.live()]
        return {
            "kind": kind, "runs": runs, "delay": delay,
            "up": summary(up, up_wall), "up_429": up_429,
            "down": summary(down, down_wall), "down_429": down_429,
            "left": left,
        }
    finally:
        sandbox.stop()


def fmt(v, unit="", digits=1):
    return "–" if v is None else f"{v:.{digits}f}{unit}"


def section(results, date):
    lines = [
        "## Many runs at once (rate-limited project)",
        "",
        f"`python3 bench/scale.py` ({date}, {machine()}): N processes at once against one sandbox with "
        "provisioning delay D and the API's limit of 120 requests per 60 s (a fixed window, "
        "`X-RateLimit-*` on every answer, the API's 429 text); pg + valkey + kafka per run; `up -q` "
        "in all N at once, then `down -q` in all N at once. Requests per run are each process's own "
        "count (logged at `-v`), 429s included. Each phase starts with a fresh window. `cold`: an empty "
        "disk cache (a fresh runner); `warm`: the cache an earlier run filled; shared: a warm pool.",
        "",
        "",
        "The ups' requests need ⌈N × requests per run / 120⌉ windows: past the first, the last "
        "`up` cannot be ready before (windows − 1) × 60 s, however well it paces.",
        "",
        "| | N | `up` p50 / p95 / max | `up` exits | requests per run (mean / max) | windows the ups need | 429s (up / down) | `down` wall | `down` exits | left after the downs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        d = r["delay"]
        up, down = r["up"], r["down"]
        lines.append(
            f"| {r['kind']}, D = {d:g} s | {r['runs']} "
            f"| {up['p50']:.1f} / {up['p95']:.1f} / {up['max']:.1f} s ({up['max'] / d:.2f}·D) "
            f"| {'all 0' if up['codes'] == [0] else up['codes']} "
            f"| {fmt(up['requests_mean'])} / {up['requests_max']} up, {fmt(down['requests_mean'])} / {down['requests_max']} down "
            f"| {math.ceil(r['runs'] * (up['requests_mean'] or 0) / 120)} "
            f"| {r['up_429']} / {r['down_429']} | {down['wall']:.1f} s "
            f"| {'all 0' if down['codes'] == [0] else down['codes']} "
            f"| {len(r['left']) or 'nothing'} |"
        )
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--delay", default="20s")
    ap.add_argument("--only", choices=KINDS)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    args = ap.parse_args()
    if not os.path.exists(BIN):
        subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "aiven-ephemeral"], cwd=ROOT, check=True)
    # Every scenario's latest result, so that `--only` redoes one and keeps the others.
    saved_path = os.path.splitext(args.out)[0] + "-scale.json"
    saved = {}
    if os.path.exists(saved_path):
        with open(saved_path) as f:
            saved = json.load(f)
    for kind in KINDS:
        if args.only and args.only != kind:
            continue
        r = scenario(kind, args.runs, args.delay)
        print(json.dumps(r, indent=1), flush=True)
        saved[kind] = r
        with open(saved_path, "w") as f:
            json.dump(saved, f, indent=1)
    results = [saved[k] for k in KINDS if k in saved]
    text = section(results, dt.date.today().isoformat())
    print(text)
    replace_section(args.out, text.rstrip("\n").split("\n") + [""])


if __name__ == "__main__":
    main()
