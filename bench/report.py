#!/usr/bin/env python3
"""Writes BENCHMARKS.md and bench/plots/*.png from the result lines in target/bench/*.jsonl.

Every line is one measurement with a `section`. The sections this file knows (the hub against
automerge-repo under load, initial sync) get tables of medians over the repetitions, ratios taken
run by run (each Tidepool run against the automerge-repo run next to it) and plots over their three
sizes; any other section (a benchmark make target that prints JSON or `summary` lines, captured by
bench/capture.sh) is listed as it printed, so adding a target adds a section. A section with no result
lines in target/bench keeps what the current BENCHMARKS.md says for it (with its own run date), so one
section can be rerun alone without losing the others.
"""
import glob
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.environ.get("BENCH_OUT") or os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "bench")
PLOTS = os.path.join(ROOT, "bench", "plots")

# What each captured section covers, for the reader; sections built elsewhere say so.
PHASES = {
    "bench-core": "core in one process: puts, applies and initial sync against raw Automerge (`core/benches/core.rs`)",
    "bench-hub": "`tidepool-load`, all clients in one process, against a release hub (`hub/bench/load.sh`)",
    "bench-hub-idle": "hub memory per idle connection (`hub/benches/idle.rs`)",
    "bench-hub-pg": "several hubs on one PostgreSQL against one hub on SQLite, same run, all processes on this "
                    "one machine: writes/s and p99 visibility over 30 databases, and kill -9 of an owner to a "
                    "write acknowledged again (`hub/benches/pg.rs`)",
    "bench-wasm": "browser: bulkPut against raw IndexedDB, cold open, single put; single puts from two instances "
                  "of one database in turn (as two tabs), each rereading what the other wrote, against one "
                  "instance (`wasm/tests/bench.rs`)",
    "bench-wasm-tabs": "browser tabs of one database (`wasm/scripts/tabs-bench.mjs`): a put in one tab until "
                       "another tab's `subscribe` hears it, against the writing tab's own listener and a plain "
                       "BroadcastChannel message; the leading tab closed (or its renderer crashed) until another "
                       "leads and is online again, against a plain Web Lock handed over by the same close",
    "bench-bridge": "bridge end to end with release builds (`tez-bridge/benches/bridge.rs`): `tidepool-bridge "
                    "snapshot` from hub state to files on a MiniDFSCluster, process start to exit, against a raw "
                    "hdfs-native write of the same bytes in the same round; peak RSS of bridge and hub; a whole "
                    "enrich `run` with its phase split and write-back changes/s (changes sent / push seconds)",
    "bench-watch": "continuous analytics (`tez-bridge/benches/watch.rs`): `tidepool-bridge watch` with an aggregate "
                   "job over 10,000 records, the time from an edit in one client to the updated total in another "
                   "(p50, p99), on a warm Tez session against a JVM per run (`--no-session`) in the same run, in "
                   "local mode and on the YARN test cluster (a MiniTezCluster with 2 NodeManagers over 2 DataNodes)",
    "bench-session": "Tez DAG runner: a cold one-shot DAG against a DAG in a warm Tez session, 10,000 records, local "
                     "mode (`tez-bridge/jvm/bench-session.sh`)",
}


def load_rows():
    rows = []
    for path in sorted(glob.glob(os.path.join(OUT, "*.jsonl"))):
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def machine():
    def read(path):
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return ""
    cpu = next((l.split(":", 1)[1].strip() for l in read("/proc/cpuinfo").splitlines() if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) for l in read("/proc/meminfo").splitlines() if l.startswith("MemTotal")), 0)
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip() or "?"
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip() or "?"
    return [f"{os.cpu_count()} cores ({cpu})", f"{mem / 1024 / 1024:.1f} GiB memory",
            f"Linux {platform.release()}", rustc, f"Node {node}"]


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float) and digits == 0 and abs(v) < 10:
        return f"{v:.2f}"
    return f"{v:,.{digits}f}"


def runs(group):
    failed = sum(1 for r in group if r.get("failed") or r.get("setup_finished") is False)
    return f"{len(group)} ({failed} failed)" if failed else str(len(group))


def failures(rows, md):
    for r in rows:
        if r.get("setup_finished") is False and not r.get("failed"):
            r["failed"] = f"setup (every client fetching every document) did not finish within the cap ({r.get('setup_s', 0):.0f} s)"
    bad = [r for r in rows if r.get("failed")]
    if bad:
        md.append("Failed runs (counted as 0% finished, not converged):\n")
        md += [f"- {r['system']}, " + (f"{r['clients']} clients, " if "clients" in r else "") + f"{r.get('records')} records: {r['failed']}" for r in bad]
        md.append("")


def times(v):
    return "n/a" if v is None else f"{v:,.1f}x"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def growth(label, sizes, values, unit):
    """Says whether a cost grows worse than linearly over the sizes (per-size cost rising >25%)."""
    pairs = [(s, v) for s, v in zip(sizes, values) if v]
    if len(pairs) < 2:
        return f"{label}: too few sizes measured to judge growth."
    (s0, v0), (s1, v1) = pairs[0], pairs[-1]
    factor = (v1 / v0) / (s1 / s0)
    verdict = "worse than linear" if factor > 1.25 else ("about linear" if factor > 0.8 else "better than linear")
    return (f"{label}: {fmt(v0, 2)} {unit} at {s0:,} and {fmt(v1, 2)} at {s1:,}: {s1 / s0:.0f}x the size costs "
            f"{v1 / v0:.1f}x, **{verdict}** (cost per unit x{factor:.2f}).")


def plot(name, title, xlabel, ylabel, series, logy=False, logx=False):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    os.makedirs(PLOTS, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for label, xs, ys in series:
        pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(PLOTS, f"{name}.png"))
    plt.close(fig)
    return f"bench/plots/{name}.png"


def by(rows, *keys):
    out = defaultdict(list)
    for r in rows:
        out[tuple(r.get(k) for k in keys)].append(r)
    return out


def paired_ratios(rows, size_key, metric, invert=False):
    """Ratios Tidepool / automerge-repo per size, pairing the i-th run of each (they ran back to back)."""
    out = {}
    for (size,), group in by(rows, size_key).items():
        tp = [r.get(metric) for r in group if r["system"] == "tidepool"]
        am = [r.get(metric) for r in group if r["system"] == "automerge-repo"]
        ratios = [(b / a if invert else a / b) for a, b in zip(tp, am) if a and b]
        out[size] = med(ratios)
    return out


def section_load(rows, md):
    md.append("## Hub against automerge-repo under load\n")
    md.append(
        "N simulated clients, each its own connection and full replica, spread over several load processes; each "
        "owns one field per record and its n-th write to a record sets the field to n; R records; each client keeps "
        "at most W writes unconfirmed (closed loop). A Tidepool write is confirmed when the hub acknowledges it (after "
        "its SQLite commit). automerge-repo has no acknowledgement: a write is confirmed when the server's heads, as "
        "its sync messages report them to the writer, contain it. Latency: from the put until the last of the other "
        "N-1 clients saw it (Tidepool: received and checked the change, by its hash; automerge-repo: its value in "
        "the document). Tidepool's load clients merge lazily (`ClientOptions::lazy_merge`): a remote change is "
        "checked on arrival and merged into the record's document when that client next writes or reads the "
        "record, so every write still builds on every change that client received and the hub sees the same "
        "traffic, while the load processes stop paying for merging records they never touch; automerge-repo's "
        "clients are its own `Repo`s, merging everything. Writes/s: confirmed writes over the time from the start until every client's writes "
        "were confirmed, or the cap. automerge-repo runs are capped; `finished` is the share of the planned writes "
        "confirmed by then. Server and client CPU are measured from the start of writing to convergence (and, in "
        "their own column, until every write was confirmed: what set the pace); peak RSS is the "
        "server's VmHWM over the whole run (setup included). Medians over the repetitions; the ratio is the median "
        "of per-repetition ratios of runs done back to back. automerge-repo is 2.5.6 from npm "
        "(bench/node/package-lock.json); its CBOR codec runs without the optional native extractor, whose "
        "prebuilt 2.2.3 packages are not on the registry. Tidepool's hub commits to SQLite before it "
        "acknowledges; the automerge-repo server saves to files on its own schedule.\n")
    params = sorted({(r.get("planned"), r.get("window"), r.get("procs"), r.get("records")) for r in rows if r.get("window")})
    caps = sorted({r["run"].split("--cap ")[1].split()[0] for r in rows if "--cap " in r.get("run", "")})
    md.append("Parameters of these runs: " + "; ".join(f"{o:,} planned writes, window {w}, clients over {p} processes, "
                                                     f"{rec:,} records" for o, w, p, rec in params if o is not None)
              + (f"; cap {', '.join(caps)} s" if caps else "") + ".\n")
    header = ["clients", "system", "runs", "writes/s", "p50 ms", "p99 ms", "finished", "converged", "server CPU s",
              "server peak RSS MiB", "client CPU s", "client CPU s while writing", "load before"]
    out = []
    sizes = sorted({r["clients"] for r in rows})
    stats = {}
    for n in sizes:
        for system in ("tidepool", "automerge-repo"):
            g = [r for r in rows if r["clients"] == n and r["system"] == system]
            if not g:
                continue
            s = {k: med([r.get(k) for r in g]) for k in ("writes_per_s", "p50_ms", "p99_ms", "finished", "server_cpu_s",
                                                        "server_peak_rss_mib", "client_cpu_s", "client_cpu_writing_s",
                                                        "server_cpu_writing_s")}
            s["converged"] = all(r.get("converged") for r in g)
            stats[(n, system)] = s
            out.append([n, system, runs(g), fmt(s["writes_per_s"], 1), fmt(s["p50_ms"], 1), fmt(s["p99_ms"], 1),
                        f"{s['finished'] * 100:.0f}%", fmt(s["converged"]), fmt(s["server_cpu_s"], 1),
                        fmt(s["server_peak_rss_mib"], 1), fmt(s["client_cpu_s"], 1), fmt(s["client_cpu_writing_s"], 1),
                        ", ".join(f"{r.get('load_before', 0):.1f}" for r in g)])
    md.append(table(header, out) + "\n")
    # All processes share this machine: where the load processes used far more CPU than the server,
    # they, not the server, set the pace, and the figures bound the server from below only.
    bound = [(n, system, s) for (n, system), s in sorted(stats.items()) if load_bound(*pace(s))]
    if bound:
        md.append("Bound by the load generator, not the server (all processes share this machine's "
                  f"{os.cpu_count()} cores; CPU while writing where the run recorded it): " + "; ".join(
                      f"{system} at {n} clients (load processes {pace(s)[0]:.1f} s of CPU, server "
                      f"{pace(s)[1]:.1f} s)" for n, system, s in bound)
                  + ". There, writes/s and latency say how fast the clients could go, not the server; server CPU "
                  "per write is the server's figure.\n")
    failures(rows, md)
    ratios = paired_ratios(rows, "clients", "writes_per_s")
    p99 = paired_ratios(rows, "clients", "p99_ms", invert=True)
    cpu_per_write = {}
    for (n, system), s in stats.items():
        if s["server_cpu_s"] is not None and s["writes_per_s"]:
            g = [r for r in rows if r["clients"] == n and r["system"] == system]
            cpu_per_write[(n, system)] = med([r["server_cpu_s"] / r["confirmed"] * 1000 for r in g if r.get("confirmed")])
    md.append(table(["clients", "writes/s, Tidepool / automerge-repo", "p99, automerge-repo / Tidepool",
                     "server CPU ms per write, Tidepool", "automerge-repo"],
                    [[n, times(ratios.get(n)), times(p99.get(n)), fmt(cpu_per_write.get((n, "tidepool")), 3),
                      fmt(cpu_per_write.get((n, "automerge-repo")), 3)] for n in sizes]) + "\n")
    series = lambda key: [(s, sizes, [stats.get((n, s), {}).get(key) for n in sizes]) for s in ("tidepool", "automerge-repo")]
    for name, title, key, ylabel in (("load-writes", "Confirmed writes per second", "writes_per_s", "writes/s"),
                                     ("load-p99", "p99 visibility on every other client", "p99_ms", "ms"),
                                     ("load-server-cpu", "Server CPU per confirmed write", None, "ms")):
        if key:
            path = plot(name, title, "clients", ylabel, series(key), logy=True)
        else:
            path = plot(name, title, "clients", ylabel,
                        [(s, sizes, [cpu_per_write.get((n, s)) for n in sizes]) for s in ("tidepool", "automerge-repo")], logy=True)
        if path:
            md.append(f"![{title}]({path})\n")
    md.append("Growth (clients; each write goes to N-1 others, so fan-out work per write grows linearly with N and "
              "server CPU per write growing with N is expected; per delivered change it should stay flat):\n")
    for system in ("tidepool", "automerge-repo"):
        per_delivery = [cpu_per_write.get((n, system)) / (n - 1) if cpu_per_write.get((n, system)) and n > 1 else None for n in sizes]
        md.append("- " + growth(f"{system}, server CPU per delivered change", sizes, per_delivery, "ms"))
        md.append("- " + growth(f"{system}, p99 latency", sizes, [stats.get((n, system), {}).get("p99_ms") for n in sizes], "ms"))
    md.append("")


def section_sync(rows, md):
    md.append("## Initial sync of a fresh client\n")
    md.append("A store of R records (5 string fields each) is put through one client; then a fresh client downloads "
              "all of it: Tidepool subscribes to the store and waits until idle; automerge-repo's client `find`s "
              "every document by URL, at most 20 at a time (more make the server answer 'unavailable'; it has no notion "
              "of a store). Tidepool's time includes opening the connection; automerge-repo's starts once connected. "
              "The automerge-repo client is capped; `fetched` says how many records it had by then.\n")
    sizes = sorted({r["records"] for r in rows})
    caps = sorted({r["run"].split("--cap ")[1].split()[0] for r in rows if "--cap " in r.get("run", "")})
    if caps:
        md.append(f"Cap of these runs: {', '.join(caps)} s (seeding is capped at three times that).\n")
    out = []
    stats = {}
    for n in sizes:
        for system in ("tidepool", "automerge-repo"):
            g = [r for r in rows if r["records"] == n and r["system"] == system]
            if not g:
                continue
            s = {k: med([r.get(k) for r in g]) for k in ("seconds", "fetched", "server_cpu_s", "server_peak_rss_mib", "client_cpu_s")}
            s["finished"] = all(r.get("finished") for r in g)
            stats[(n, system)] = s
            out.append([n, system, runs(g), fmt(s["seconds"], 2), fmt(s["fetched"]), fmt(s["finished"]),
                        fmt(s["server_cpu_s"], 2), fmt(s["server_peak_rss_mib"], 1), fmt(s["client_cpu_s"], 2),
                        ", ".join(f"{r.get('load_before', 0):.1f}" for r in g)])
    md.append(table(["records", "system", "runs", "seconds", "fetched", "finished", "server CPU s", "server peak RSS MiB",
                     "client CPU s", "load before"], out) + "\n")
    failures(rows, md)
    ratios = paired_ratios(rows, "records", "records_per_s")
    md.append(table(["records", "records/s, Tidepool / automerge-repo (automerge-repo's capped runs count what they fetched)"],
                    [[n, times(ratios.get(n))] for n in sizes]) + "\n")
    path = plot("initial-sync", "Initial sync of a fresh client", "records", "seconds",
                [(s, sizes, [stats.get((n, s), {}).get("seconds") for n in sizes]) for s in ("tidepool", "automerge-repo")], logy=True)
    if path:
        md.append(f"![Initial sync]({path})\n")
    for system in ("tidepool", "automerge-repo"):
        md.append("- " + growth(f"{system}, initial sync time", sizes, [stats.get((n, system), {}).get("seconds") for n in sizes], "s"))
    md.append("")


def section_generic(name, rows, md):
    md.append(f"## `make {name}`\n")
    if name in PHASES:
        md.append(f"Covers: {PHASES[name]}.\n")
    failed = [r for r in rows if "failed" in r]
    for r in failed:
        md.append(f"**Not measured in this run**: {r['failed']}.\n")
    texts = [r for r in rows if "text" in r]
    if texts:
        md.append("\n".join(f"- {r['text']}" for r in texts) + "\n")
    objs = [r for r in rows if "text" not in r and "failed" not in r]
    if objs:
        skip = {"section", "target", "command", "started", "run", "hub"}
        keys = [k for k in dict.fromkeys(k for r in objs for k in r) if k not in skip]
        md.append(table(keys, [[fmt(r.get(k), 2) if isinstance(r.get(k), float) else r.get(k, "") for k in keys] for r in objs]) + "\n")
    if name == "bench-bridge":
        bridge_growth(objs, md)
    if name == "bench-wasm":
        browser_growth(objs, md)
    if rows:
        md.append(f"Load average before: {rows[0].get('load_before', 'n/a')}; run at {rows[0].get('started', '?')}.\n")


def browser_growth(rows, md):
    """A plot of bulkPut, raw IndexedDB and cold open over database sizes."""
    sized = sorted((r for r in rows if "tidepool_bulk_put_ms" in r), key=lambda r: r["records"])
    if len(sized) < 2:
        return
    sizes = [r["records"] for r in sized]
    path = plot("browser-bulk-put", "Browser: bulkPut and cold open", "records", "ms",
                [("tidepool bulkPut", sizes, [r.get("tidepool_bulk_put_ms") for r in sized]),
                 ("raw IndexedDB, same values", sizes, [r.get("raw_idb_ms") for r in sized]),
                 ("cold open", sizes, [r.get("cold_open_ms") for r in sized])], logy=True, logx=True)
    if path:
        md.append(f"![browser bulkPut]({path})\n")


def bridge_growth(rows, md):
    """Plots of the bridge's figures over store sizes, so growth worse than linear shows."""
    snaps = sorted((r for r in rows if r.get("figure") == "snapshot"), key=lambda r: r["records"])
    runs = sorted((r for r in rows if r.get("figure") == "run"), key=lambda r: r["records"])
    if len(snaps) < 2:
        return
    sizes = [r["records"] for r in snaps]
    path = plot("bridge-snapshot", "Snapshot, hub state to HDFS", "records", "seconds",
                [("tidepool-bridge snapshot", sizes, [r.get("seconds") for r in snaps]),
                 ("raw hdfs-native write, same bytes", sizes, [r.get("raw_seconds") for r in snaps])],
                logy=True, logx=True)
    if path:
        md.append(f"![bridge snapshot]({path})\n")
    if len(runs) >= 2:
        sizes = [r["records"] for r in runs]
        phases = ["export", "tez", "output-parse", "push"]
        path = plot("bridge-run", "Enrich run: wall time and phases", "records", "seconds",
                    [("wall", sizes, [r.get("wall_seconds") for r in runs])]
                    + [(p, sizes, [r.get(f"{p}_seconds") for r in runs]) for p in phases], logy=True, logx=True)
        if path:
            md.append(f"![bridge run]({path})\n")
    # Seconds per record at each size: flat means linear growth.
    per = ", ".join(f"{r['records']:,}: {1e6 * r['seconds'] / r['records']:.1f} µs" for r in snaps)
    md.append(f"Snapshot time per record (flat is linear growth): {per}.\n")
    if runs:
        per = ", ".join(f"{r['records']:,}: {1e6 * r['push_seconds'] / r['records']:.0f} µs"
                        for r in runs if r.get("push_seconds"))
        md.append(f"Write-back time per change: {per}.\n")


KEPT_MARK = "*Kept from an earlier run"
KEPT = (KEPT_MARK + ", possibly on another machine of this kind: this run produced no result lines for it (its run "
        "date and load are below).*\n")


def earlier_sections():
    """The measured sections of the current BENCHMARKS.md by heading, each as its lines of text."""
    try:
        with open(os.path.join(ROOT, "BENCHMARKS.md")) as f:
            text = f.read()
    except OSError:
        return {}
    sections, heading = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            heading = line
            sections[heading] = []
        elif heading is not None:
            sections[heading].append(line)
    return {h: "\n".join(body).strip() + "\n" for h, body in sections.items()
            if "Not measured in this run" not in "\n".join(body) and h not in ("## Pending", "## Commands")}


def keep_or_missing(heading, missing, earlier, md):
    """Appends the earlier text of a section not measured in this run, or `missing` if there is none."""
    md.append(heading + "\n")
    body = earlier.get(heading)
    if body is None:
        md.append(missing)
    else:
        md.append(KEPT)
        kept = [line for line in body.splitlines() if not line.startswith(KEPT_MARK)]
        md.append("\n".join(kept).lstrip("\n") + "\n")


def core_pending(rows):
    """The core put's target (0.5x of raw Automerge), if this run's figure misses it."""
    ratios = [float(m.group(1)) for r in rows if r.get("text", "").startswith("puts: ")
              for m in [re.search(r"ratio ([0-9.]+)x of raw", r["text"])] if m]
    if ratios and min(ratios) >= 0.5:
        return []
    return ["Core put against raw Automerge: below its 0.5x target (see `make bench-core`). A put writes two ops, "
            "the field and the edit count that lets an edit win over a concurrent delete, where the raw baseline "
            "writes one; the line beside it measures raw Automerge writing the same two ops and taking the change's "
            "bytes, which shows how much of the gap is that second op."]


def missed_at(rows, key, target, show):
    """Where a figure (`key`, per record count) is below `target`: `show(records, value)` for each such
    size, joined; "" when every size meets it, and a note when nothing was measured."""
    measured = sorted((r["records"], r[key]) for r in rows if r.get(key))
    if not measured:
        return "every size (not measured)"
    return ", ".join(show(n, x) for n, x in measured if x < target)


def bridge_pending(rows):
    """The bridge's targets (snapshot 0.7x of a raw HDFS write, write-back 30,000 changes/s) this run missed."""
    out = []
    snapshots = [r for r in rows if r.get("figure") == "snapshot"]
    where = missed_at(snapshots, "ratio_of_raw", 0.7, lambda n, x: f"{n:,} records ({x:.2f}x)")
    if where:
        text = (f"Bridge snapshot below its target of 0.7x of a raw HDFS write of the same bytes at {where} (see "
                "`make bench-bridge`). The snapshot pays one round of HDFS file closes, as the raw write does (in "
                "it hdfs-native waits 500 ms when the namenode cannot complete a file yet); the rest is the export "
                "stream, where the hub reads the store's rows a page at a time and the bridge turns them into lines, "
                "with two pages asked for ahead so that neither waits for the other. Sampled with perf at 1,000,000 "
                "records, neither the hub's storage thread nor the bridge is then busy more than about 60% of a core, "
                "and the machine's two cores are: hub, bridge and the datanode's JVM use them all between them.")
        largest = max(snapshots, key=lambda r: r["records"])
        if largest.get("bridge_cpu_seconds") is not None and largest.get("hub_cpu_seconds") is not None:
            text += (f" At {largest['records']:,} records the bridge used {largest['bridge_cpu_seconds']:.2f} s of CPU "
                     f"and the hub {largest['hub_cpu_seconds']:.2f} s, beside the datanode's, on this machine's "
                     "cores: the three processes share them, where the raw write runs the client and the datanode "
                     "alone.")
        out.append(text)
    where = missed_at(rows, "write_back_changes_per_second", 30_000, lambda n, x: f"{x:,.0f}/s at {n:,} records")
    if where:
        text = (f"Bridge write-back below its target of 30,000 changes/s: {where} (see `make bench-bridge`). The "
                "hub's storage thread bounds it. Neither side loads an Automerge document for a record nobody "
                "edited since the snapshot: the hub serves the record's tip and takes the change on it, the "
                "bridge builds the change from the tip and sends it unparsed (the hub checks it), a log row goes "
                "into no random index (SQLite schema version 3 chains a document's rows instead of `log_by_doc`), "
                "and the hub's connection tasks parse pushed payloads, off the storage thread. Sampled with perf "
                "at 1,000,000 records before that last step, the storage thread was busy about 92% of a core "
                "during the push: reading the row for the fetch (about 20%), writing the log and document rows "
                "(about 30%), taking the change on the tip (about 14%, most of it Automerge expanding the "
                "change's ops), the parse now moved (about 10%) and the commit (about 8%). Runs of the same "
                "code on this machine spread widely (at 1,000,000 records from 21,000 to 30,000 changes/s), "
                "so one run's figure says less than the CPU per change below.")
        runs = [r for r in rows if r.get("figure") == "run" and r.get("changes_written")]
        if runs:
            r = max(runs, key=lambda r: r["records"])
            hub, bridge, n = r.get("hub_cpu_seconds"), r.get("bridge_cpu_seconds"), r["changes_written"]
            if hub and bridge:
                cores = os.cpu_count() or 1
                per = 1e6 * (hub + bridge) / n
                text += (f" At {r['records']:,} records the hub used {1e6 * hub / n:.0f} µs of CPU per change and the "
                         f"bridge {1e6 * bridge / n:.0f} µs (building it from the tip): {per:.0f} µs in all, "
                         f"so this machine's {cores} cores could not go past about {cores * 1e6 / per:,.0f} changes/s "
                         "even with every core busy.")
        out.append(text)
    return out


def pace(s):
    """(load processes' CPU, server's CPU) while the clients wrote, where the run recorded it (the
    convergence check after writing costs the load processes alone), else from start to convergence."""
    if s.get("client_cpu_writing_s") is not None and s.get("server_cpu_writing_s") is not None:
        return s["client_cpu_writing_s"], s["server_cpu_writing_s"]
    return s.get("client_cpu_s"), s.get("server_cpu_s")


def load_bound(client_cpu, server_cpu):
    """Whether load processes that used `client_cpu` seconds, beside a server that used `server_cpu`,
    set the pace: all processes share this machine, so clients far busier than the server bound it."""
    return bool(client_cpu and server_cpu and client_cpu > 4 * server_cpu)


def vs_repo_pending(rows):
    """What the hub-against-automerge-repo figures of this run leave open."""
    if not rows:
        return ["Hub against automerge-repo at N = 10, 50 and 200 clients with R = 1,000: not measured in this run; "
                "the section above is kept from an earlier one (`make bench-vs-repo`)."]
    out = []
    wanted = {10, 50, 200}
    if not wanted <= {r.get("clients") for r in rows} or any(r.get("records") != 1000 for r in rows):
        out.append("Hub against automerge-repo: this run did not cover N = 10, 50 and 200 clients with R = 1,000 "
                   "records; rerun `make bench-vs-repo` with the default knobs.")
    peer = [r for r in rows if r.get("system") == "automerge-repo"]
    slow = sorted({r["clients"] for r in peer if r.get("setup_finished") is False})
    if slow:
        cap = max(r.get("setup_s", 0) for r in peer if r.get("setup_finished") is False)
        out.append(f"automerge-repo at {', '.join(map(str, slow))} clients: its clients could not set up within the "
                   f"cap (about {cap:.0f} s; each client fetches every record, one client after another in each load "
                   "process), so no write was timed and there is no ratio at those sizes.")
    failed = sorted({r["clients"] for r in peer if r.get("failed") and r.get("setup_finished") is not False})
    if failed:
        out.append(f"automerge-repo at {', '.join(map(str, failed))} clients: its load clients never got ready (their "
                   "`find`s of the records timed out while the clients set up), so there is no ratio at those sizes.")
    bound = [r for r in rows if r.get("system") == "tidepool" and load_bound(*pace(r))]
    if bound:
        out.append("Tidepool's hub under load: the load processes, sharing this machine's cores, set the pace "
                   "(see above), so writes/s and latency understate the hub; measuring the hub itself needs the "
                   "load processes on other machines.")
    return out


def main():
    earlier = earlier_sections()
    rows = load_rows()
    md = ["# Benchmarks\n",
          "Generated by `make bench` (bench/report.py) from the result lines in `target/bench/*.jsonl`; do not edit "
          "by hand. Each section runs alone too (the commands are below). Figures are ratios against a baseline "
          "measured in the same run where there is one; absolute numbers depend on the machine and on what else ran "
          "on it (the load average before each run is recorded).\n",
          "Machine: " + "; ".join(machine()) + ".\n"]
    busy = [r.get("load_before") for r in rows if isinstance(r.get("load_before"), (int, float))]
    if busy and max(busy) > (os.cpu_count() or 1):
        md.append(f"**The machine was busy during these runs** (load average before a run up to {max(busy):.1f} on "
                  f"{os.cpu_count()} cores): absolute figures and even ratios are noisy; rerun on an idle machine "
                  "before quoting them.\n")
    pending = core_pending([r for r in rows if r.get("section") == "bench-core"])
    pending += bridge_pending([r for r in rows if r.get("section") == "bench-bridge"])
    pending += vs_repo_pending([r for r in rows if r.get("section") == "vs-repo"])
    sections = defaultdict(list)
    for r in rows:
        sections[r.get("section", "?")].append(r)
    if "vs-repo" in sections:
        section_load(sections.pop("vs-repo"), md)
    else:
        keep_or_missing("## Hub against automerge-repo under load",
                        "Not measured in this run (`make bench-vs-repo`).\n", earlier, md)
    if "initial-sync" in sections:
        section_sync(sections.pop("initial-sync"), md)
    else:
        keep_or_missing("## Initial sync of a fresh client",
                        "Not measured in this run (`make bench-initial-sync`).\n", earlier, md)
    for name in sorted(sections):
        section_generic(name, sections[name], md)
    # Targets `make bench` runs that left no result lines (not run yet on this machine).
    for name in os.environ.get("BENCH_TARGETS", "").split():
        if name not in sections and name not in ("bench-vs-repo", "bench-initial-sync"):
            covers = f"Covers: {PHASES[name]}.\n\n" if name in PHASES else ""
            keep_or_missing(f"## `make {name}`", covers + f"**Not measured in this run** (no `target/bench/{name}.jsonl`; "
                            f"`make bench` or `bench/capture.sh {name}` produces it).\n", earlier, md)
    md.append("## Pending\n")
    md += [f"- {p}" for p in pending]
    md.append("\n## Commands\n")
    md.append("`make bench` runs every section through `bench/capture.sh` (which keeps its result lines in "
              "`target/bench/`) and then `make bench-report`. One section alone, then the report:\n")
    targets = os.environ.get("BENCH_TARGETS", "").split() or sorted({r.get("target") for r in rows if r.get("target")})
    md.append("```\nmake bench\n" + "\n".join(f"bench/capture.sh {t}" for t in targets) + "\nmake bench-report\n```\n")
    md.append("Knobs of `bench-vs-repo` and `bench-initial-sync` (bench/bench.mk): BENCH_CLIENTS (10 50 200), "
              "BENCH_RECORDS (1000), BENCH_OPS (10000), BENCH_WINDOW (8), BENCH_REPS (3), BENCH_PROCS (4), "
              "BENCH_CAP (300 s), BENCH_SYNC_SIZES (1000 3000 10000). Each result line records its own parameters; "
              "the tables show what was run.\n")
    with open(os.path.join(ROOT, "BENCHMARKS.md"), "w") as f:
        f.write("\n".join(md).rstrip() + "\n")
    print(f"BENCHMARKS.md written from {len(rows)} result lines", file=sys.stderr)


if __name__ == "__main__":
    main()
