#!/usr/bin/env python3
"""One run of a sync server under load, or of an initial sync, for Tidepool's hub or an
automerge-repo sync server; prints one JSON line.

  run_load.py load SYSTEM --clients N --records R --ops OPS --window W --procs P --cap S
  run_load.py initial-sync SYSTEM --records R --fields F --cap S

SYSTEM is `tidepool` (target/release/tidepool-hub and tidepool-load) or `automerge-repo`
(bench/node/server.mjs and load.mjs). The server runs in its own process; the simulated clients are
spread over P processes, each coordinated through stdin/stdout (see client/src/load_part.rs), so
the server, not one load process, is what saturates. Server CPU is read from /proc at `go` and at
the end; peak RSS is the server's VmHWM; client CPU comes from the load processes' rusage.

A write counts as confirmed when the server acknowledged it (Tidepool) or when the server's heads,
as its sync messages report them to the writer, contain it (automerge-repo). Writes/s are confirmed
writes over the time from `go` until every process had its writes confirmed or hit the cap. A
write's latency is from its put until the last of the other N-1 clients saw it; writes not seen by
all of them are not counted in p50/p99 (`samples` says how many were).
"""
import argparse
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
BIN = os.path.join(TARGET, "release")
NODE = os.path.join(ROOT, "bench", "node")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User plus system CPU of a live process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def load_average():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


class Server:
    """A sync server on a fresh data directory, stopped (and the directory removed) on exit."""

    def __init__(self, system, work):
        self.system = system
        data = os.path.join(work, "data")
        if system == "tidepool":
            cmd = [os.path.join(BIN, "tidepool-hub"), "serve", "--listen", "127.0.0.1:0", "--data", data]
        else:
            cmd = ["node", os.path.join(NODE, "server.mjs"), data]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(os.path.join(work, "server.log"), "w"), text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            raise SystemExit(f"{system} server did not start: {line!r}, see {work}/server.log")
        addr = line.split()[-1]
        if system == "tidepool":
            self.url = f"ws://{addr}/v1/sync"
            self.token = subprocess.check_output(
                [os.path.join(BIN, "tidepool-hub"), "token", "--secret-file", os.path.join(data, "secret"),
                 "--sub", "bench", "--db", "load", "--read", "*", "--write", "*"], text=True).strip()
        else:
            self.url = f"ws://127.0.0.1:{addr}"
            self.token = ""

    def cpu(self):
        return cpu_seconds(self.proc.pid)

    def peak_rss(self):
        return peak_rss_mib(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def client_cmd(system, server, mode, **kw):
    if system == "tidepool":
        cmd = [os.path.join(BIN, "tidepool-load"), "--url", server.url, "--token", server.token]
        if mode == "part":
            cmd += ["--clients", str(kw["clients"]), "--records", str(kw["records"]), "--ops", str(kw["ops"]),
                    "--window", str(kw["window"]), "--part", str(kw["first"]), str(kw["count"]),
                    "--trace", kw["trace"], "--cap", f"{kw['cap']}s", "--timeout", f"{kw['converge']}s", "--lazy-merge"]
        elif mode == "seed":
            cmd += ["--records", str(kw["records"]), "--seed", str(kw["fields"])]
        else:
            cmd += ["--fresh", "--cap", f"{kw['cap']}s"]
        return cmd
    script = ["node", os.path.join(NODE, "load.mjs")]
    if mode == "part":
        return script + ["part", server.url, kw["docs"], str(kw["first"]), str(kw["count"]), str(kw["clients"]),
                         str(kw["ops"]), str(kw["window"]), str(kw["cap"]), kw["trace"]]
    if mode == "seed":
        return script + ["seed", server.url, str(kw["records"]), str(kw["fields"]), kw["docs"]]
    return script + ["fresh", server.url, kw["docs"], str(kw["cap"])]


def reap(proc):
    """Waits for a child and returns its CPU seconds (user + system) from rusage."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def last_json(text):
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise SystemExit(f"no JSON line in {text!r}")


def percentile(sorted_ms, p):
    if not sorted_ms:
        return None
    return sorted_ms[min(len(sorted_ms) - 1, round(p / 100 * (len(sorted_ms) - 1)))]


def seed(system, server, work, records, fields, env, cap):
    docs = os.path.join(work, "docs.json")
    out = subprocess.run(client_cmd(system, server, "seed", records=records, fields=fields, docs=docs),
                         capture_output=True, text=True, env=env, timeout=max(120, 3 * cap))
    if out.returncode != 0:
        raise SystemExit(f"seeding failed: {out.stderr[-2000:]}")
    return docs, last_json(out.stdout)


def run_load(a, work, env):
    load_before = load_average()
    server = Server(a.system, work)
    try:
        docs = None
        if a.system == "automerge-repo":
            # automerge-repo documents exist before anyone writes to them; Tidepool records are
            # created by their first put. Creating them is not timed.
            docs, _ = seed(a.system, server, work, a.records, 0, env, a.cap)
        procs = max(1, min(a.procs, a.clients))
        parts = []
        first = 0
        for p in range(procs):
            count = a.clients // procs + (1 if p < a.clients % procs else 0)
            trace = os.path.join(work, f"trace{p}.json")
            cmd = client_cmd(a.system, server, "part", clients=a.clients, records=a.records, ops=a.ops,
                             window=a.window, first=first, count=count, trace=trace, cap=a.cap,
                             converge=a.converge, docs=docs)
            parts.append((subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                           stderr=open(os.path.join(work, f"part{p}.log"), "w")), trace))
            first += count
        setup_started = time.monotonic()
        for proc, _ in parts:
            # Setting up (every client fetching every record) is capped like the run.
            left = a.cap - (time.monotonic() - setup_started)
            if not select.select([proc.stdout], [], [], max(0, left))[0]:
                return {"system": a.system, "clients": a.clients, "records": a.records, "window": a.window,
                        "procs": procs, "planned": a.ops, "writes": 0, "confirmed": 0, "finished": 0.0,
                        "converged": False, "capped": True, "setup_s": time.monotonic() - setup_started,
                        "setup_finished": False, "server_cpu_s": server.cpu(), "server_peak_rss_mib": server.peak_rss(),
                        "load_before": load_before}
            line = proc.stdout.readline().strip()
            if line != "ready":
                raise SystemExit(f"a load process did not get ready: {line!r} (see {work})")
        setup_s = time.monotonic() - setup_started
        client_cpu0 = sum(cpu_seconds(p.pid) for p, _ in parts)
        server_cpu0 = server.cpu()
        for proc, _ in parts:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        written = [json.loads(proc.stdout.readline()) for proc, _ in parts]
        # Once every process has its writes confirmed: what each side spent while writing, before the
        # convergence check (which reads, and so merges, every record on every client).
        client_cpu_writing = sum(cpu_seconds(p.pid) for p, _ in parts) - client_cpu0
        server_cpu_writing = server.cpu() - server_cpu0
        finals = [f for w in written for f in w["written"]]
        for proc, _ in parts:
            proc.stdin.write(json.dumps(finals) + "\n")
            proc.stdin.flush()
        ends = [json.loads(proc.stdout.readline()) for proc, _ in parts]
        server_cpu = server.cpu() - server_cpu0
        peak = server.peak_rss()
        client_cpu = sum(reap(p) for p, _ in parts) - client_cpu0
    finally:
        for proc, _ in parts if "parts" in locals() else []:
            if proc.returncode is None and proc.poll() is None:
                proc.kill()
                proc.wait()
        server.stop()
    # A write is named by (writer, record, n) in automerge-repo's traces and by (record, change
    # hash) in Tidepool's: a put is then [w, r, n, at, hash] and a sighting [r, hash, count, at].
    puts = {}
    seen = {}
    for _, trace in parts:
        with open(trace) as f:
            t = json.load(f)
        for put in t["puts"]:
            puts[tuple(put[:3]) if len(put) == 4 else (put[1], put[4])] = put[3]
        for sighting in t["seen"]:
            name, count, at = (tuple(sighting[:3]), sighting[3], sighting[4]) if len(sighting) == 5 else (
                (sighting[0], sighting[1]), sighting[2], sighting[3])
            c, last = seen.get(name, (0, 0.0))
            seen[name] = (c + count, max(last, at))
    latencies = sorted(seen[k][1] - at for k, at in puts.items() if seen.get(k, (0,))[0] >= a.clients - 1)
    writes = sum(w["writes"] for w in written)
    confirmed = sum(w["confirmed"] for w in written)
    seconds = max(w["seconds"] for w in written)
    return {
        "system": a.system, "clients": a.clients, "records": a.records, "window": a.window, "procs": procs,
        "planned": a.ops, "writes": writes, "confirmed": confirmed, "finished": confirmed / a.ops if a.ops else 0,
        "seconds": seconds, "writes_per_s": confirmed / seconds if seconds > 0 else 0,
        "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99), "samples": len(latencies),
        "converged": all(e["converged"] for e in ends), "capped": seconds >= a.cap * 0.999,
        "server_cpu_s": server_cpu, "server_peak_rss_mib": peak, "client_cpu_s": client_cpu,
        "client_cpu_writing_s": client_cpu_writing, "server_cpu_writing_s": server_cpu_writing,
        "setup_s": setup_s, "load_before": load_before,
    }


def run_initial_sync(a, work, env):
    load_before = load_average()
    server = Server(a.system, work)
    try:
        docs, seeded = seed(a.system, server, work, a.records, a.fields, env, a.cap)
        cpu0 = server.cpu()
        fresh = subprocess.Popen(client_cmd(a.system, server, "fresh", cap=a.cap, docs=docs), stdout=subprocess.PIPE,
                                 text=True, env=env)
        out = fresh.stdout.read()
        client_cpu = reap(fresh)
        result = last_json(out)
        server_cpu = server.cpu() - cpu0
        peak = server.peak_rss()
    finally:
        server.stop()
    return {
        "system": a.system, "records": a.records, "fields": a.fields, "seconds": result["seconds"],
        "fetched": result["fetched"], "finished": result["finished"] and result["fetched"] == a.records,
        "records_per_s": result["fetched"] / result["seconds"] if result["seconds"] > 0 else 0,
        "server_cpu_s": server_cpu, "server_peak_rss_mib": peak, "client_cpu_s": client_cpu,
        "seed_s": seeded["seconds"], "load_before": load_before,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["load", "initial-sync"])
    p.add_argument("system", choices=["tidepool", "automerge-repo"])
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--records", type=int, default=1000)
    p.add_argument("--ops", type=int, default=10000)
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--procs", type=int, default=4)
    p.add_argument("--fields", type=int, default=5)
    p.add_argument("--cap", type=float, default=300, help="seconds a run may write (load) or fetch (initial-sync)")
    p.add_argument("--converge", type=float, default=60, help="seconds to wait for convergence after writing")
    p.add_argument("--section", default=None, help="section name put in the JSON line")
    a = p.parse_args()
    env = dict(os.environ, CONVERGE_S=str(a.converge), RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    work = tempfile.mkdtemp(prefix="tidepool-bench-")
    started = time.monotonic()
    try:
        result = run_load(a, work, env) if a.mode == "load" else run_initial_sync(a, work, env)
    except (Exception, SystemExit) as e:
        # A run that fails is a result too (the peer gave up, or a load process did): it is
        # reported as such and the next run goes on.
        for name in sorted(os.listdir(work)):
            if name.endswith(".log"):
                with open(os.path.join(work, name), errors="replace") as f:
                    sys.stderr.write(f"--- {name}\n{f.read()[-3000:]}\n")
        result = {"system": a.system, "clients": a.clients, "records": a.records, "planned": a.ops,
                  "finished": 0.0, "converged": False, "fetched": 0, "load_before": load_average(),
                  "failed": str(e).splitlines()[0][:200] if str(e) else type(e).__name__}
        if a.mode != "load":
            del result["clients"], result["planned"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["wall_s"] = time.monotonic() - started
    result["section"] = a.section or a.mode
    result["run"] = " ".join(["bench/run_load.py"] + sys.argv[1:])
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
