#!/usr/bin/env python3
"""Benchmarks of aiven-ephemeral against the sandbox, side by side with the official avn
CLI and a naive poller, measured in one run on one sandbox with one provisioning delay.

    python3 bench/run.py                 # full run, writes docs/benchmarks.md and the plot
    python3 bench/run.py --sizes 1,10 --delay 5s --out /tmp/bench.md   # a quick one
    python3 bench/run.py --only shared   # shared services only: its section of the report

Needs: cargo, python3, and avn (`pip install aiven-client`). No third-party Python.
The shared-services benchmark also wants PostgreSQL and redis-server installed (the
sandbox's `backends: auto` puts real servers behind pg and valkey services).

What it measures:
  1. scaling: `up` for N services; wall time / provisioning delay; API requests per
     service; list calls (one per poll tick, whatever N is).
  2. the same job done as avn's docs show: `avn service create` for each, then
     `avn service wait`, then `avn service terminate`.
  3. a naive baseline: the same poll schedule, but one GET per service per tick.
  4. teardown latency: SIGINT to every DELETE sent, for 50 services.
  5. binary size, start-up time of --version and validate, peak memory of up (100).
  6. shared services: `up` of pg + valkey + kafka, dedicated (each run creates and waits
     for its services) against shared on a warm pool (each run only makes its tenancy
     inside long-lived services), in one sandbox with real servers where installed.
"""

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
BIN = os.path.join(TARGET, "release", "aiven-ephemeral")
PROJECT = "bench"


def parse_duration(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", text)
    if not m:
        raise SystemExit(f"bad duration {text}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


class Sandbox:
    def __init__(self, delay, backends="simulated", topic_activation="200ms", extra=""):
        self.dir = tempfile.mkdtemp(prefix="ae-bench-")
        config = os.path.join(self.dir, "sandbox.yaml")
        with open(config, "w") as f:
            f.write(
                f"token: bench-token\nprojects: [{{name: {PROJECT}}}]\nprovisioning_delay: {delay}\n"
                f"name_reservation: 1s\nbackends: {backends}\ntopic_activation: {topic_activation}\n{extra}"
            )
        env = dict(os.environ)
        # Real servers' data directories: as root, PostgreSQL runs as `postgres`, which
        # must be able to enter them (mkdtemp's 0700 directories are out of its reach).
        self.data = tempfile.mkdtemp(prefix="ae-bench-data-")
        os.chmod(self.data, 0o1777)
        env["TMPDIR"] = self.data
        self.log = open(os.path.join(self.dir, "sandbox.log"), "w")
        self.proc = subprocess.Popen(
            [BIN, "sandbox", "--config", config], stdout=subprocess.PIPE, stderr=self.log, text=True, env=env
        )
        values = dict(self.proc.stdout.readline().strip().split("=", 1) for _ in range(3))
        self.url, self.token = values["AIVEN_API_URL"], values["AIVEN_TOKEN"]

    def description(self):
        """The sandbox's own line on what serves pg and valkey (its stderr's first line)."""
        for _ in range(50):
            with open(self.log.name) as f:
                m = re.search(r"listening on \S+ \((.*)\)", f.read())
            if m:
                return m.group(1)
            time.sleep(0.1)
        return "unknown"

    def admin(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + "/_sandbox" + path, data=data, method=method)
        req.add_header("content-type", "application/json")
        with urllib.request.urlopen(req) as r:
            return json.load(r)

    def api(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        for _ in range(5):
            req = urllib.request.Request(self.url + "/v1" + path, data=data, method=method)
            req.add_header("authorization", f"aivenv1 {self.token}")
            req.add_header("content-type", "application/json")
            try:
                with urllib.request.urlopen(req) as r:
                    return json.load(r)
            except urllib.error.HTTPError as e:
                # A rate-limited sandbox: the benchmark's own reads wait their turn too.
                if e.code != 429:
                    raise
                time.sleep(int(e.headers.get("x-ratelimit-reset") or 1) + 0.2)
        raise RuntimeError(f"{method} {path}: still rate-limited")

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
        self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)


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


def timed_run(sandbox, cmd, cwd, measure_memory=False):
    """Runs one command of ours against the sandbox: wall time, the API requests it sent
    (the sandbox's request log, cleared before), peak memory if asked."""
    sandbox.clear()
    start = time.monotonic()
    if measure_memory:
        code, rss = peak_rss_kib(cmd, env_for(sandbox), cwd)
    else:
        code, rss = subprocess.run(cmd, env=env_for(sandbox), cwd=cwd).returncode, None
    wall = time.monotonic() - start
    assert code == 0, f"{' '.join(cmd[1:])} failed ({code}) in {cwd}"
    return wall, sandbox.requests(), rss


def ours(sandbox, n, delay, measure_memory=False):
    work = tempfile.mkdtemp(prefix="ae-bench-ours-")
    manifest(work, n)
    wall, reqs, rss = timed_run(sandbox, [BIN, "up", "-q", "--run-id", f"b{n}"], work, measure_memory)
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


def three_services(dir, shared):
    """pg + valkey + kafka, as a CI job's manifest would ask for them."""
    flag = ", shared: true" if shared else ""
    with open(os.path.join(dir, "aiven-ephemeral.yaml"), "w") as f:
        f.write(
            f"project: {PROJECT}\nservices:\n"
            f"  db: {{type: pg, plan: hobbyist{flag}, databases: [app]}}\n"
            f"  cache: {{type: valkey, plan: hobbyist{flag}}}\n"
            f"  events: {{type: kafka, plan: startup-2{flag}, topics: [{{name: orders, partitions: 1, replication: 1}}]}}\n"
        )


def up_down(sandbox, shared, run_id):
    """One run: `up` to ready, then `down`; wall time and API requests of each."""
    work = tempfile.mkdtemp(prefix=f"ae-bench-{run_id}-")
    three_services(work, shared)
    up, up_reqs, _ = timed_run(sandbox, [BIN, "up", "-q", "--run-id", run_id], work)
    with open(os.path.join(work, ".aiven-ephemeral", "env")) as f:
        exported = f.read()
    down, down_reqs, _ = timed_run(sandbox, [BIN, "down", "-q"], work)
    return {"run_id": run_id, "up": up, "up_requests": len(up_reqs), "down": down,
            "down_requests": len(down_reqs), "exports": exported,
            "up_calls": calls(up_reqs), "down_calls": calls(down_reqs)}


def calls(reqs):
    """Requests by kind, most frequent first: `GET service/{s}` for every service's GET."""
    kinds = {}
    for r in reqs:
        path = re.sub(rf"^/v1/project/{PROJECT}", "", r["path"])
        path = re.sub(r"^/service/[^/]+", "/service/{s}", path)
        path = re.sub(r"/(user|topic|acl)/[^/]+$", r"/\1/{x}", path)
        path = re.sub(r"^/pricing/.*", "/pricing/{plan}", path)
        kind = f"{r['method']} {path.lstrip('/') or 'project'}"
        kinds[kind] = kinds.get(kind, 0) + 1
    return dict(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))


def shared_leftovers(sandbox, run_id):
    """What of run `run_id` is still inside the shared services, and whether they still run."""
    tenant = f"run-{run_id}"
    left = []
    services = [s for s in sandbox.api("GET", f"/project/{PROJECT}/service")["services"]
                if "aiven-ephemeral-shared" in (s.get("tags") or {})]
    if len(services) != 3:
        left.append(f"{len(services)} shared services instead of 3")
    for s in services:
        name = s["service_name"]
        if s["state"] != "RUNNING":
            left.append(f"{name} is {s['state']}")
        left += [f"{name}: tag {k}" for k in s.get("tags") or {} if k.endswith(f"lease-{run_id}")]
        left += [f"{name}: user {u['username']}" for u in s.get("users") or [] if u["username"] == tenant]
        if s["service_type"] == "kafka":
            topics = sandbox.api("GET", f"/project/{PROJECT}/service/{name}/topic")["topics"]
            left += [f"{name}: topic {t['topic_name']}" for t in topics if t["topic_name"].startswith(tenant + ".")]
        if s["service_type"] == "pg":
            uri = sandbox.api("GET", f"/project/{PROJECT}/service/{name}?include_secrets=true")["service"]["service_uri"]
            sql = ("select 'role ' || rolname from pg_roles where rolname like 'run-%' union all "
                   "select 'database ' || datname from pg_database where datname like 'run-%'")
            out = subprocess.run(["psql", uri, "-tAc", sql], capture_output=True, text=True,
                                 env=dict(os.environ, PGSSLMODE="require"))
            if out.returncode != 0:
                left.append(f"{name}: psql failed: {out.stderr.strip()}")
            left += [f"{name}: {line}" for line in out.stdout.splitlines()
                     if line.endswith(" " + tenant) or f" {tenant}_" in line]
    return left


def shared_vs_dedicated(delay_text, runs):
    """In one sandbox with provisioning delay D and real servers where installed:
    dedicated pg + valkey + kafka (create, wait D, delete) against the same manifest with
    `shared: true` on a warm pool (the services exist and run; each run only makes its
    tenancy inside: a PostgreSQL role and database over SQL, a Valkey ACL user, a Kafka
    user, ACL and topic)."""
    delay = parse_duration(delay_text)
    sandbox = Sandbox(delay_text, backends="auto")
    try:
        backends = sandbox.description()
        print(f"shared: dedicated up/down (D = {delay:g} s; {backends})", flush=True)
        dedicated = up_down(sandbox, False, "ded")
        sandbox.wait_empty()
        print("shared: warming the pool (first shared up creates the services)", flush=True)
        warm = up_down(sandbox, True, "sh0")
        problems = shared_leftovers(sandbox, "sh0")
        shared = []
        for i in range(1, runs + 1):
            print(f"shared: run {i}/{runs} on the warm pool", flush=True)
            shared.append(up_down(sandbox, True, f"sh{i}"))
            problems += shared_leftovers(sandbox, f"sh{i}")
    finally:
        sandbox.stop()
    exports = shared[0]["exports"]
    for r in [dedicated, warm] + shared:
        del r["exports"]
    ups, downs = [r["up"] for r in shared], [r["down"] for r in shared]
    return {"delay": delay, "backends": backends, "runs": runs, "dedicated": dedicated, "warm": warm,
            "shared": shared, "up_median": statistics.median(ups), "up_worst": max(ups),
            "down_median": statistics.median(downs), "down_worst": max(downs),
            "ratio": dedicated["up"] / statistics.median(ups),
            "exported_names": sorted(line.split("=", 1)[0] for line in exports.splitlines() if "=" in line),
            "leftovers": problems, "date": dt.date.today().isoformat(), "machine": machine()}


def kinds(calls):
    return ", ".join(f"{n} `{k}`" for k, n in calls.items())


def shared_section(r):
    """The report's section on shared services, from shared_vs_dedicated's results."""
    d, D = r["dedicated"], r["delay"]
    goal_up = min(5.0, D / 10)
    ok = lambda good: "met" if good else "**missed**"
    same = lambda key: {x[key] for x in r["shared"]}
    reqs = lambda key: "/".join(str(n) for n in sorted(same(key)))
    return [
        "## Shared services: dedicated against a warm pool",
        "",
        f"Measured {r['date']} on {r['machine']}, by `python3 bench/run.py` (`--only shared` runs this part alone)",
        f"(provisioning delay D = {D:g} s, {r['runs']} shared runs; one sandbox for everything, with",
        f"`backends: auto`: {r['backends']}; Kafka simulated, topics active 200 ms after their create).",
        "The manifest is pg (hobbyist, database `app`) + valkey (hobbyist) + kafka (startup-2, topic",
        "`orders`): once as is (dedicated), once with `shared: true` on each service. Times are",
        "wall time of the whole command, `up` until it exits with every service ready and the env",
        "file written; requests are the sandbox's request log for that command.",
        "",
        "| | dedicated | shared, first run (creates the pool) | shared on the warm pool: median | worst |",
        "|---|---|---|---|---|",
        f"| `up` to ready | {d['up']:.1f} s | {r['warm']['up']:.1f} s | {r['up_median']:.2f} s | {r['up_worst']:.2f} s |",
        f"| API requests of `up` | {d['up_requests']} | {r['warm']['up_requests']} | {reqs('up_requests')} (every run) | |",
        f"| `down` | {d['down']:.2f} s | {r['warm']['down']:.2f} s | {r['down_median']:.2f} s | {r['down_worst']:.2f} s |",
        f"| API requests of `down` | {d['down_requests']} | {r['warm']['down_requests']} | {reqs('down_requests')} (every run) | |",
        "",
        f"- Shared `up` on the warm pool: median {r['up_median']:.2f} s, worst {r['up_worst']:.2f} s, against",
        f"  the goal of under 5 s and under D/10 = {D/10:g} s: {ok(r['up_worst'] < goal_up)}.",
        f"- Dedicated / shared (median): {r['ratio']:.0f}x ({d['up']:.1f} s against {r['up_median']:.2f} s);"
        f" against the worst shared run, {d['up']/r['up_worst']:.0f}x.",
        f"- Teardown: shared `down` median {r['down_median']:.2f} s, worst {r['down_worst']:.2f} s, goal under 2 s:"
        f" {ok(r['down_worst'] < 2)}. Dedicated `down` took {d['down']:.2f} s.",
        f"- After every shared `down`, nothing of the run was left (lease tag, PostgreSQL role and",
        f"  database, Valkey and Kafka users, topics) and the three services still ran:"
        f" {'yes' if not r['leftovers'] else 'no: ' + '; '.join(r['leftovers'])}.",
        "",
        "Requests by kind (`{s}` is any of the three services):",
        "",
        f"- dedicated `up`: {kinds(d['up_calls'])}; `down`: {kinds(d['down_calls'])}.",
        f"- shared `up` on the warm pool (run {r['shared'][0]['run_id']}): {kinds(r['shared'][0]['up_calls'])};"
        f" `down`: {kinds(r['shared'][0]['down_calls'])}.",
        "",
        "Dedicated `up` is bound by provisioning: it creates three services and waits D for them,",
        "polling with one list call per tick, so its request count grows with D. The first shared",
        "run pays the same D once, to create the pool, reading each service (without secrets) a",
        "fifth of the time waited apart, 1 s to 10 s, until it runs. On the warm pool `up` creates no",
        "service and lists none: per service it reads it once with the admin credentials (a Kafka",
        "service's read carries its ACLs, so that no wildcard ACL reaches the run), sees it running",
        "and writes its lease tag (a GET and a PATCH), then makes its tenancy: a role and a database",
        "over SQL (TLS) on the real PostgreSQL, an ACL user on the real Valkey, a Kafka user with four",
        "Kafka-native prefixed ACLs (topics read and write, groups, transactional ids) and a topic",
        "(waiting for it to be active). The project's default cloud, CA and prices come from the disk",
        "cache. Its time and its requests do not depend on D. `down` drops the same objects and the",
        "lease and deletes no service; the dedicated `down` sends three DELETEs and confirms with a list.",
        "",
        "Where the shared `up`'s requests go: a read and a lease per service, which no other call",
        "can stand in for, and the Kafka tenancy's user, ACLs (one call each) and topic.",
        "",
    ]


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
    ap.add_argument("--only", choices=["shared"],
                    help="run one benchmark and replace only its section of the report and its results")
    ap.add_argument("--shared-delay", default="60s", help="provisioning delay D of the shared-services benchmark")
    ap.add_argument("--shared-runs", type=int, default=5, help="shared runs on the warm pool")
    ap.add_argument("--skip-shared", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    delay = parse_duration(args.delay)
    results_path = os.path.splitext(args.out)[0] + "-results.json"
    if args.report_only:
        with open(args.report_only) as f:
            saved = json.load(f)
        write_report(args, **saved)
        return
    subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "aiven-ephemeral"], cwd=ROOT, check=True)
    if args.only == "shared":
        shared = shared_vs_dedicated(args.shared_delay, args.shared_runs)
        saved = {}
        if os.path.exists(results_path):
            with open(results_path) as f:
                saved = json.load(f)
        saved["shared"] = shared
        with open(results_path, "w") as f:
            json.dump(saved, f, indent=1)
        replace_section(args.out, shared_section(shared))
        print("\n".join(shared_section(shared)))
        return
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
    shared = None if args.skip_shared else shared_vs_dedicated(args.shared_delay, args.shared_runs)
    work = tempfile.mkdtemp(prefix="ae-bench-start-")
    manifest(work, 10)
    version = timed([BIN, "--version"], 30, work)
    validate = timed([BIN, "validate"], 30, work)
    size = os.path.getsize(BIN)
    musl = os.path.join(TARGET, "x86_64-unknown-linux-musl", "release", "aiven-ephemeral")
    musl_size = os.path.getsize(musl) if os.path.exists(musl) else None
    results = {"rows": rows, "sig": sig, "version": version, "validate": validate, "size": size,
               "musl_size": musl_size, "delay": delay, "sizes": sizes, "date": dt.date.today().isoformat(),
               "machine": machine(), "shared": shared}
    with open(results_path, "w") as f:
        json.dump(results, f, indent=1)
    write_report(args, **results)


def replace_section(path, section):
    """Puts `section` (its first line a `## ` heading) in the report in place of the section
    with the same heading, or before `## Teardown` when it has none; the rest stays as is."""
    with open(path) as f:
        lines = f.read().split("\n")
    heading = section[0]
    if heading in lines:
        start = lines.index(heading)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    else:
        start = end = lines.index("## Teardown") if "## Teardown" in lines else len(lines)
    lines[start:end] = section
    with open(path, "w") as f:
        f.write("\n".join(lines))


def write_report(args, rows, sig, version, validate, size, musl_size, delay, sizes, date, machine, shared=None):
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
    ]
    if shared:
        lines += shared_section(shared)
    lines += [
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
