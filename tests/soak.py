#!/usr/bin/env python3
"""Soak harness: three x0xd daemons on loopback under steady load, for hours.

Usage: tests/soak.py [--minutes 120] [--bin target/release] [--out DIR]
                     [--restart-every 240] [--sample-every 30] [--rate 10]

Not part of `.ci/run` (it runs for hours). Build first:
    cargo build --release --bin x0xd

Load, all through the REST API as an agent would drive it:
  * every daemon subscribes to one topic and reads `/events` over SSE;
  * each daemon publishes `--rate` messages per second (1 KiB each);
  * A sends a direct message to B and to C every second, and looks them up
    (`/agents/find/:id`, `/presence/online`) every ten seconds;
  * churn: every `--restart-every` seconds B or C (in turn) is stopped with SIGTERM and
    started again on the same data directory and ports.

A is never restarted: it is the daemon that "runs for days". Every `--sample-every` seconds
the harness samples, per daemon: RSS and open descriptors from /proc, and
`/diagnostics/resources` (runtime and driver tasks, every bounded table with its cap).
The series goes to OUT/series.jsonl (one line per sample) and OUT/summary.json.

Verdict, on A: for RSS, descriptors, both task counts and every table, the mean of the last
quarter of the run must not exceed the mean of the second quarter by more than 5 %. A table
whose last-quarter mean sits at its cap is bounded by construction and reported, not failed.
The first quarter is warm-up (caches filling) and is not judged. Exit 0 on pass, 1 on fail.

LAN discovery is off and every address is 127.0.0.1: nothing leaves loopback. Every process
started is stopped on exit, also on failure or Ctrl-C.
"""

import argparse
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request


def free_ports(n):
    """`n` ports free for both UDP and TCP on 127.0.0.1 (held until all are found)."""
    out, held = [], []
    while len(out) < n:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        p = u.getsockname()[1]
        t = socket.socket()
        try:
            t.bind(("127.0.0.1", p))
            out.append(p)
            held += [u, t]
        except OSError:
            u.close()
            t.close()
    for s in held:
        s.close()
    return out


class SseReader:
    """Reads an SSE stream on a thread, counting `data:` lines; reconnects when it ends."""

    def __init__(self, daemon, path):
        self.daemon, self.path, self.count, self.stop = daemon, path, 0, False
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while not self.stop:
            try:
                req = urllib.request.Request(
                    f"http://{self.daemon.api}{self.path}",
                    headers={"Authorization": f"Bearer {self.daemon.token()}"},
                )
                with urllib.request.urlopen(req, timeout=30) as r:
                    for line in r:
                        if self.stop:
                            return
                        if line.startswith(b"data:"):
                            self.count += 1
            except Exception:
                pass
            time.sleep(1)


class Daemon:
    """One x0xd with its own data dir and fixed ports, restartable."""

    def __init__(self, bin_dir, work, name, quic, api, bootstrap):
        self.bin = os.path.join(bin_dir, "x0xd")
        self.name, self.dir = name, os.path.join(work, name)
        self.api = f"127.0.0.1:{api}"
        os.makedirs(os.path.join(self.dir, "home"), exist_ok=True)
        peers = ", ".join(f'"127.0.0.1:{p}"' for p in bootstrap)
        with open(os.path.join(self.dir, "config.toml"), "w") as f:
            f.write(
                f'data_dir = "{self.dir}"\nbind_address = "127.0.0.1:{quic}"\n'
                f'api_address = "{self.api}"\nbootstrap_peers = [{peers}]\n'
                'lan_discovery = false\nlog_level = "warn"\n'
            )
        self.proc, self.restarts, self.sub = None, 0, None

    def token(self):
        with open(os.path.join(self.dir, "api-token")) as f:
            return f.read().strip()

    def start(self):
        env = dict(os.environ, HOME=os.path.join(self.dir, "home"))
        log = open(os.path.join(self.dir, "log"), "ab")
        self.proc = subprocess.Popen(
            [self.bin, "--config", os.path.join(self.dir, "config.toml")],
            env=env, stdout=log, stderr=log,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.dir}/log")
            try:
                if self.req("GET", "/health", auth=False)[0] == 200:
                    break
            except Exception:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"{self.name} did not answer /health within 30 s")
        self.sub = self.req("POST", "/subscribe", {"topic": "soak"})[1].get("subscription_id")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def req(self, method, path, body=None, auth=True, timeout=10):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        req = urllib.request.Request(f"http://{self.api}{path}", data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, {}

    def agent_id(self):
        return self.req("GET", "/agent")[1]["agent_id"]

    def proc_sample(self):
        pid = self.proc.pid
        rss = None
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        return {"rss_bytes": rss, "open_fds": len(os.listdir(f"/proc/{pid}/fd"))}


def quarter_means(values):
    q = len(values) // 4
    second, last = values[q:2 * q], values[3 * q:]
    if not second or not last:
        return None, None
    return sum(second) / len(second), sum(last) / len(last)


def judge(samples):
    """The verdict on A's series: (ok, findings)."""
    series = {}
    caps = {}
    for s in samples:
        a = s["daemons"]["a"]
        for key in ("rss_bytes", "open_fds"):
            series.setdefault(key, []).append(a[key])
        for key, v in a["tasks"].items():
            series.setdefault(f"tasks.{key}", []).append(v)
        for t in a["tables"]:
            series.setdefault(f"table.{t['table']}", []).append(t["len"])
            caps[f"table.{t['table']}"] = t["cap"]
    ok, findings = True, []
    for key, values in sorted(series.items()):
        second, last = quarter_means(values)
        if second is None:
            continue
        grew = last > second * 1.05 and last - second >= 1
        at_cap = key in caps and last >= caps[key]
        line = {"series": key, "second_quarter_mean": round(second, 2),
                "last_quarter_mean": round(last, 2), "max": max(values)}
        if key in caps:
            line["cap"] = caps[key]
        if grew and not at_cap:
            ok = False
            line["verdict"] = "grew"
        elif grew:
            line["verdict"] = "grew to its cap (bounded)"
        else:
            line["verdict"] = "flat"
        findings.append(line)
    return ok, findings


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=120)
    ap.add_argument("--bin", default="target/release")
    ap.add_argument("--out", default=None)
    ap.add_argument("--restart-every", type=float, default=240)
    ap.add_argument("--sample-every", type=float, default=30)
    ap.add_argument("--rate", type=float, default=10, help="publishes per second per daemon")
    args = ap.parse_args()
    if not os.access(os.path.join(args.bin, "x0xd"), os.X_OK):
        sys.exit(f"soak: {args.bin}/x0xd missing (cargo build --release --bin x0xd)")
    out = args.out or tempfile.mkdtemp(prefix="x0x-soak-out-")
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="x0x-soak-")
    q = free_ports(6)
    a = Daemon(args.bin, work, "a", q[0], q[3], [])
    b = Daemon(args.bin, work, "b", q[1], q[4], [q[0]])
    c = Daemon(args.bin, work, "c", q[2], q[5], [q[0], q[1]])
    daemons = {"a": a, "b": b, "c": c}
    readers = []
    stopping = threading.Event()
    counts = {"published": 0, "publish_failed": 0, "dm_ok": 0, "dm_failed": 0,
              "finds": 0, "restarts": 0, "sample_errors": 0}

    def shutdown(*_):
        stopping.set()

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    try:
        for d in daemons.values():
            d.start()
        readers = [SseReader(d, "/events") for d in daemons.values()]
        ids = {n: d.agent_id() for n, d in daemons.items()}
        payload = base64.b64encode(b"x" * 1024).decode()

        def load():
            tick = 0
            while not stopping.is_set():
                t0 = time.time()
                for d in daemons.values():
                    for _ in range(int(args.rate)):
                        try:
                            st, _ = d.req("POST", "/publish", {"topic": "soak", "payload": payload})
                            counts["published" if st == 200 else "publish_failed"] += 1
                        except Exception:
                            counts["publish_failed"] += 1
                for to in ("b", "c"):
                    try:
                        st, _ = a.req("POST", "/direct/send", {"agent_id": ids[to], "payload": payload})
                        counts["dm_ok" if st == 200 else "dm_failed"] += 1
                    except Exception:
                        counts["dm_failed"] += 1
                if tick % 10 == 0:
                    for to in ("b", "c"):
                        try:
                            a.req("POST", f"/agents/find/{ids[to]}", timeout=30)
                            a.req("GET", "/presence/online")
                            counts["finds"] += 1
                        except Exception:
                            pass
                tick += 1
                stopping.wait(max(0.0, 1.0 - (time.time() - t0)))

        threading.Thread(target=load, daemon=True).start()

        start = time.time()
        end = start + args.minutes * 60
        next_restart = start + args.restart_every
        next_sample = start
        turn = 0
        series = open(os.path.join(out, "series.jsonl"), "w")
        samples = []
        print(f"soak: {args.minutes} min, output in {out}, data in {work}", flush=True)
        while time.time() < end and not stopping.is_set():
            now = time.time()
            if now >= next_restart:
                d = (b, c)[turn % 2]
                turn += 1
                d.stop()
                d.start()
                d.restarts += 1
                counts["restarts"] += 1
                next_restart += args.restart_every
            if now >= next_sample:
                sample = {"t_s": round(now - start, 1), "daemons": {}, "counts": dict(counts),
                          "sse_events": [r.count for r in readers]}
                try:
                    for n, d in daemons.items():
                        res = d.req("GET", "/diagnostics/resources")[1]
                        sample["daemons"][n] = {**d.proc_sample(), "tasks": res["tasks"],
                                                "connections": res["connections"],
                                                "tables": res["tables"], "restarts": d.restarts}
                    samples.append(sample)
                    series.write(json.dumps(sample) + "\n")
                    series.flush()
                    sa = sample["daemons"]["a"]
                    print(f"t={sample['t_s']:>7}s A rss={sa['rss_bytes'] / 1e6:.1f} MB "
                          f"fds={sa['open_fds']} tasks={sa['tasks']} conns={sa['connections']} "
                          f"published={counts['published']} dm={counts['dm_ok']}/{counts['dm_failed']} "
                          f"restarts={counts['restarts']}", flush=True)
                except Exception as e:
                    counts["sample_errors"] += 1
                    print(f"soak: sample failed: {e}", flush=True)
                next_sample += args.sample_every
            stopping.wait(0.5)
        ok, findings = judge(samples)
        summary = {"ok": ok, "minutes": round((time.time() - start) / 60, 1),
                   "samples": len(samples), "counts": counts, "findings": findings}
        with open(os.path.join(out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        for line in findings:
            if line["verdict"] != "flat" or not line["series"].startswith("table."):
                print(json.dumps(line))
        print(f"soak {'ok' if ok else 'FAILED'}: {len(samples)} samples over {summary['minutes']} min, "
              f"{counts['published']} published, {counts['dm_ok']} DMs, {counts['restarts']} restarts; "
              f"{out}/summary.json")
        return 0 if ok else 1
    finally:
        stopping.set()
        for r in readers:
            r.stop = True
        for d in daemons.values():
            d.stop()


if __name__ == "__main__":
    sys.exit(main())
