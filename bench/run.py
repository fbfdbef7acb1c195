#!/usr/bin/env python3
"""Benchmarks of aiven-ephemeral against the sandbox, side by side with the official avn
CLI and a naive poller, measured in one run on one sandbox with one provisioning delay.

    python3 bench/run.py                 # full run, writes docs/benchmarks.md and the plot
    python3 bench/run.py --sizes 1,10 --delay 5s --out /tmp/bench.md   # a quick one

Needs: cargo, python3, and avn (`pip install aiven-client`). No third-party Python.
What it measures:
  1. scaling: `up` for N services; wall time / provisioning delay; API requests per
     service; list calls (one per poll tick, whatever N is).
  2. the same job done as avn's docs show: `avn service create` for each, then
     `avn service wait`, then `avn service terminate`.
  3. a naive baseline: the same poll schedule, but one GET per service per tick.
  4. teardown latency: SIGINT to every DELETE sent, for 50 services.
  5. binary size, start-up time of --version and validate, peak memory of up (100).
"""

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "aiven-ephemeral")
PROJECT = "bench"


def parse_duration(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", text)
    if not m:
        raise SystemExit(f"bad duration {text}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


class Sandbox:
    def __init__(self, delay):
        self.dir = tempfile.mkdtemp(prefix="ae-bench-")
        config = os.path.join(self.dir, "sandbox.yaml")
        with open(config, "w") as f:
            f.write(
                f"token: bench-token\nprojects: [{{name: {PROJECT}}}]\nprovisioning_delay: {delay}\n"
                "name_reservation: 1s\nbackends: simulated\ntopic_activation: 200ms\n"
            )
        self.proc = subprocess.Popen(
            [BIN, "sandbox", "--config", config], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        values = dict(self.proc.stdout.readline().strip().split("=", 1) for _ in range(3))
        self.url, self.token = values["AIVEN_API_URL"], values["AIVEN_TOKEN"]

    def admin(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + "/_sandbox" + path, data=data, method=method)
        req.add_header("content-type", "application/json")
        with urllib.request.urlopen(req) as r:
            return json.load(r)

    def api(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + "/v1" + path, data=data, method=method)
        req.add_header("authorization", f"aivenv1 {self.token}")
        req.add_header("content-type", "application/json")
        with urllib.request.urlopen(req) as r:
            return json.load(r)

    def requests(self):
        return self.admin("GET", "/requests")["requests"]

    def clear(self):
        self.admin("DELETE", "/requests")

    def live(self):
        return [s for s in self.admin("GET", "/services")["services"] if not s["deleted"]]

    def wait_empty(self):
        while self.live():
            time.sleep(0.2)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()


def env_for(sandbox):
    env = dict(os.environ)
    env.update(AIVEN_API_URL=sandbox.url, AIVEN_TOKEN=sandbox.token, AIVEN_PROJECT=PROJECT, NO_PROXY="127.0.0.1,localhost")
    for k in ("GITHUB_ACTIONS", "GITLAB_CI", "CI"):
        env.pop(k, None)
    return env


def manifest(dir, n, name="aiven-ephemeral.yaml"):
    path = os.path.join(dir, name)
    with open(path, "w") as f:
        f.write(f"project: {PROJECT}\nservices:\n")
        for i in range(n):
            f.write(f"  s{i}: {{type: pg, plan: hobbyist}}\n")
    return path


def peak_rss_kib(cmd, env, cwd):
    """Runs cmd in a fresh Python so RUSAGE_CHILDREN covers only it."""
    probe = (
        "import resource,subprocess,sys;"
        "r=subprocess.run(sys.argv[1:]);"
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", probe] + cmd, env=env, cwd=cwd, capture_output=True, text=True)
    code, rss = out.stdout.split()
    return int(code), int(rss)


def ours(sandbox, n, delay, measure_memory=False):
    work = tempfile.mkdtemp(prefix="ae-bench-ours-")
    manifest(work, n)
    sandbox.clear()
    cmd = [BIN, "up", "-q", "--run-id", f"b{n}"]
    start = time.monotonic()
    if measure_memory:
        code, rss = peak_rss_kib(cmd, env_for(sandbox), work)
    else:
        code, rss = subprocess.run(cmd, env=env_for(sandbox), cwd=work).returncode, None
    wall = time.monotonic() - start
    assert code == 0, f"up failed ({code})"
    reqs = sandbox.requests()
    lists = sum(1 for r in reqs if r["method"] == "GET" and r["path"] == f"/v1/project/{PROJECT}/service")
    subprocess.run([BIN, "down", "-q"], env=env_for(sandbox), cwd=work, check=True)
    sandbox.wait_empty()
    return {"tool": "aiven-ephemeral", "n": n, "wall": wall, "ratio": wall / delay, "requests": len(reqs),
            "per_service": len(reqs) / n, "lists": lists, "rss_kib": rss}


def avn(sandbox, n, delay):
    base = ["avn", "--url", sandbox.url, "--auth-token", sandbox.token]
    names = [f"avn-{n}-{i}" for i in range(n)]
    env = env_for(sandbox)
    env["AIVEN_CONFIG_DIR"] = tempfile.mkdtemp(prefix="ae-bench-avn-")
    sandbox.clear()
    start = time.monotonic()
    for name in names:
        subprocess.run(base + ["service", "create", name, "-t", "pg", "--plan", "hobbyist", "--no-project-vpc",
                               "--project", PROJECT], env=env, check=True, capture_output=True)
    subprocess.run(base + ["service", "wait", "--project", PROJECT] + names, env=env, check=True, capture_output=True)
    ready = time.monotonic() - start
    reqs = len(sandbox.requests())
    subprocess.run(base + ["service", "terminate", "--force", "--project", PROJECT] + names, env=env, check=True,
                   capture_output=True)
    total = time.monotonic() - start
    sandbox.wait_empty()
    return {"tool": "avn", "n": n, "wall": ready, "ratio": ready / delay, "requests": reqs,
            "per_service": reqs / n, "with_teardown": total}


def naive(sandbox, n, delay):
    """Our schedule (a tenth of the time waited, 1 s to 10 s; two ready polls, the second
    after 0.5 s), but one GET per service per tick instead of one list call."""
    names = [f"naive-{n}-{i}" for i in range(n)]
    sandbox.clear()
    start = time.monotonic()
    threads = [threading.Thread(target=sandbox.api, args=("POST", f"/project/{PROJECT}/service",
                                {"service_name": s, "service_type": "pg", "plan": "hobbyist", "project_vpc_id": None}))
               for s in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seen = {s: 0 for s in names}
    time.sleep(1.0)
    while any(v < 2 for v in seen.values()):
        for s in names:
            if seen[s] < 2:
                state = sandbox.api("GET", f"/project/{PROJECT}/service/{s}")["service"]["state"]
                seen[s] = seen[s] + 1 if state == "RUNNING" else 0
        if all(v >= 2 for v in seen.values()):
            break
        confirming = any(v == 1 for v in seen.values())
        time.sleep(0.5 if confirming else min(10.0, max(1.0, 0.1 * (time.monotonic() - start))))
    wall = time.monotonic() - start
    reqs = len(sandbox.requests())
    for s in names:
        sandbox.api("DELETE", f"/project/{PROJECT}/service/{s}")
    sandbox.wait_empty()
    return {"tool": "naive poller", "n": n, "wall": wall, "ratio": wall / delay, "requests": reqs,
            "per_service": reqs / n}


def parse_time(text):
    text = re.sub(r"\.(\d{6})\d*", r".\1", text).replace("Z", "+00:00")
    return dt.datetime.fromisoformat(text).timestamp()


def teardown_latency(sandbox, n=50):
    work = tempfile.mkdtemp(prefix="ae-bench-sig-")
    manifest(work, n)
    sandbox.admin("POST", "/service-faults", {"name": "ae-s*-sig", "ready_after": "10m"})
    sandbox.clear()
    proc = subprocess.Popen([BIN, "up", "-q", "--run-id", "sig"], env=env_for(sandbox), cwd=work)
    while sum(1 for r in sandbox.requests() if r["method"] == "POST" and r["status"] == 200) < n:
        time.sleep(0.05)
    time.sleep(0.5)
    sent = time.time()
    proc.send_signal(signal.SIGINT)
    code = proc.wait()
    exited = time.time() - sent
    deletes = [parse_time(r["time"]) for r in sandbox.requests() if r["method"] == "DELETE"]
    sandbox.admin("DELETE", "/service-faults")
    assert code == 130, code
    assert not sandbox.live(), "services left"
    return {"n": n, "all_deletes_out": max(deletes) - sent, "first_delete": min(deletes) - sent,
            "deletes": len(deletes), "exit": exited}


def timed(cmd, runs, cwd):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, capture_output=True)
        times.append(time.perf_counter() - start)
    times.sort()
    return sum(times) / len(times), times[len(times) // 2]


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.system()} {platform.release()}"


def svg(rows, path, metric, ylabel, guide=None):
    """A line chart of `metric` against N, without plotting libraries."""
    tools = [("aiven-ephemeral", "#d9480f"), ("naive poller", "#868e96"), ("avn", "#1c7ed6")]
    ns = sorted({r["n"] for r in rows})
    top = max(r[metric] for r in rows) * 1.1
    w, h, left, bottom = 640, 360, 60, 40
    x = lambda n: left + (w - left - 20) * (ns.index(n) / max(1, len(ns) - 1))
    y = lambda t: h - bottom - (h - bottom - 20) * (t / top)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<line x1="{left}" y1="{h-bottom}" x2="{w-20}" y2="{h-bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="20" x2="{left}" y2="{h-bottom}" stroke="black"/>',
           f'<text x="{w/2}" y="{h-8}" text-anchor="middle">services (N)</text>',
           f'<text x="14" y="{h/2}" transform="rotate(-90 14 {h/2})" text-anchor="middle">{ylabel}</text>']
    if guide:
        value, label = guide
        out += [f'<line x1="{left}" y1="{y(value)}" x2="{w-20}" y2="{y(value)}" stroke="#adb5bd" stroke-dasharray="4"/>',
                f'<text x="{w/2}" y="{y(value)+16}" text-anchor="middle" fill="#868e96">{label}</text>']
    for n in ns:
        out.append(f'<text x="{x(n)}" y="{h-bottom+16}" text-anchor="middle">{n}</text>')
    for i in range(5):
        t = top * i / 4
        out.append(f'<text x="{left-6}" y="{y(t)+4}" text-anchor="end">{t:.0f}</text>')
    for k, (tool, colour) in enumerate(tools):
        pts = sorted((r["n"], r[metric]) for r in rows if r["tool"] == tool)
        if not pts:
            continue
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                   + " ".join(f"{x(n):.1f},{y(t):.1f}" for n, t in pts) + '"/>')
        out += [f'<circle cx="{x(n):.1f}" cy="{y(t):.1f}" r="3" fill="{colour}"/>' for n, t in pts]
        out.append(f'<text x="{left+12}" y="{30+16*k}" fill="{colour}">{tool}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,10,50,100")
    ap.add_argument("--delay", default="10s")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    ap.add_argument("--skip-avn", action="store_true")
    ap.add_argument("--report-only", metavar="RESULTS_JSON", help="rewrite the report from saved results")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    delay = parse_duration(args.delay)
    if args.report_only:
        with open(args.report_only) as f:
            saved = json.load(f)
        write_report(args, **saved)
        return
    subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "aiven-ephemeral"], cwd=ROOT, check=True)
    sandbox = Sandbox(args.delay)
    rows = []
    try:
        for n in sizes:
            print(f"N={n}: aiven-ephemeral", flush=True)
            rows.append(ours(sandbox, n, delay, measure_memory=(n == max(sizes))))
            print(f"N={n}: naive poller", flush=True)
            rows.append(naive(sandbox, n, delay))
            if not args.skip_avn:
                print(f"N={n}: avn", flush=True)
                rows.append(avn(sandbox, n, delay))
        print("teardown latency", flush=True)
        sig = teardown_latency(sandbox)
    finally:
        sandbox.stop()
    work = tempfile.mkdtemp(prefix="ae-bench-start-")
    manifest(work, 10)
    version = timed([BIN, "--version"], 30, work)
    validate = timed([BIN, "validate"], 30, work)
    size = os.path.getsize(BIN)
    musl = os.path.join(ROOT, "target", "x86_64-unknown-linux-musl", "release", "aiven-ephemeral")
    musl_size = os.path.getsize(musl) if os.path.exists(musl) else None
    results = {"rows": rows, "sig": sig, "version": version, "validate": validate, "size": size,
               "musl_size": musl_size, "delay": delay, "sizes": sizes, "date": dt.date.today().isoformat(),
               "machine": machine()}
    with open(os.path.splitext(args.out)[0] + "-results.json", "w") as f:
        json.dump(results, f, indent=1)
    write_report(args, **results)


def write_report(args, rows, sig, version, validate, size, musl_size, delay, sizes, date, machine):
    docs = os.path.dirname(args.out)
    svg(rows, os.path.join(docs, "bench-scaling.svg"), "wall", "seconds to ready", (delay, "provisioning delay"))
    svg(rows, os.path.join(docs, "bench-requests.svg"), "requests", "API requests until ready")
    plot = "bench-scaling.svg"
    by = {(r["tool"], r["n"]): r for r in rows}
    lines = [
        "# Benchmarks",
        "",
        f"Measured {date} on {machine}, by `python3 bench/run.py`",
        f"(sizes {','.join(map(str, sizes))}, provisioning delay {delay:g} s, every tool against the same sandbox in one run;",
        "`backends: simulated`, so the delay is the sandbox's alone).",
        "",
        f"![time to ready against N]({plot}) ![API requests against N](bench-requests.svg)",
        "",
        "## Time to ready, and API requests",
        "",
        "Wall time from start to every service ready, divided by the provisioning delay (1.0 is the",
        "floor: no tool can beat the API; one poll interval above it is the ideal). aiven-ephemeral's",
        "time includes reading the project, the CA, the run-id check, the credentials GETs and writing",
        "the env file; avn's is `service create` for each (as its docs show) then `service wait`.",
        "",
        "| N | aiven-ephemeral | ratio | avn | ratio | avn / ours | naive poller | requests/service: ours | naive | avn | list calls (ours) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        o, a, v = by.get(("aiven-ephemeral", n)), by.get(("avn", n)), by.get(("naive poller", n))
        avn_cols = (f"{a['wall']:.1f} s | {a['ratio']:.2f} | {a['wall']/o['wall']:.1f}x" if a else "- | - | -")
        lines.append(
            f"| {n} | {o['wall']:.1f} s | {o['ratio']:.2f} | {avn_cols} | {v['wall']:.1f} s | "
            f"{o['per_service']:.2f} | {v['per_service']:.2f} | {a['per_service']:.2f} | {o['lists']} |"
            if a else
            f"| {n} | {o['wall']:.1f} s | {o['ratio']:.2f} | {avn_cols} | {v['wall']:.1f} s | "
            f"{o['per_service']:.2f} | {v['per_service']:.2f} | - | {o['lists']} |"
        )
    big = by[("aiven-ephemeral", max(sizes))]
    lines += [
        "",
        "The poll is one list call per tick whatever N is: the list-call column stays flat while N",
        "grows a hundredfold. The naive poller's requests grow with N times the ticks.",
        "",
        "## Teardown",
        "",
        f"SIGINT to `up` while {sig['n']} services were being created (not yet ready): the first DELETE",
        f"went out {sig['first_delete']*1000:.0f} ms after the signal, all {sig['deletes']} within"
        f" {sig['all_deletes_out']*1000:.0f} ms; the process exited 130 after"
        f" {sig['exit']*1000:.0f} ms, with deletion confirmed by a list and nothing left.",
        "",
        "## The binary",
        "",
        "| | |",
        "|---|---|",
        f"| size (release, glibc, stripped) | {size/2**20:.1f} MiB |",
    ]
    if musl_size:
        lines.append(f"| size (static musl, stripped; what the image holds) | {musl_size/2**20:.1f} MiB |")
    lines += [
        f"| image (Alpine 3.20 ~7.8 MiB + ca-certificates ~0.7 MiB + binary) | ~{(musl_size or size)/2**20 + 8.5:.0f} MiB (estimated: no Docker engine here) |",
        f"| `--version` start-up (mean of 30) | {version[0]*1000:.1f} ms |",
        f"| `validate` of a 10-service manifest (mean of 30) | {validate[0]*1000:.1f} ms |",
        f"| peak memory of `up` with {big['n']} services | {big['rss_kib']/1024:.1f} MiB |",
        "",
    ]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
