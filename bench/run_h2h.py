#!/usr/bin/env python3
"""Head-to-head runner: every //bench program under every allocator, interleaved.

Started by run_h2h.sh (`bazel run -c opt //bench:head_to_head -- [options]`), which passes
--bin-dir (the benchmark programs) and --workspace (the source tree). Python 3 standard library
only.

Method
  * Each run is a separate process. The allocator is chosen with LD_PRELOAD (glibc: none).
  * Runs are interleaved: for rep in 1..R: for workload: for allocator (the allocator order rotates
    by one each repetition so no allocator always runs right after the same neighbour). Slow drift
    of the machine (other jobs, thermal) then hits every allocator alike.
  * Per (workload, allocator): median throughput over the repetitions, min and max, median peak RSS
    (ru_maxrss of the child, measured by GNU time), ratio of the median to mimalloc's median.
  * MF2 runs get MF2_STATS=1; a stderr line starting with `mf2_stats:` is kept, and its reuse-rate
    and new-pages fields are reported (n/a when absent).

Output: bench/results/<timestamp>/ with runs.csv (one row per run), summary.csv, results.md,
chart.png (gnuplot), logs/ (full output of MF2 runs and failed runs), and the Markdown table on
stdout. Progress goes to stderr, one line per run.
"""

import argparse
import csv
import datetime
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PEERS = [
    ("glibc", None),
    ("mimalloc", "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2"),
    ("jemalloc", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"),
    ("tcmalloc", "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"),
]
PEER_PACKAGES = {
    "glibc": "libc6",
    "mimalloc": "libmimalloc2.0",
    "jemalloc": "libjemalloc2",
    "tcmalloc": "libtcmalloc-minimal4",
}
MF2 = "mf2"
# MF2 under each slow-path policy (mf2/policy.h), selected with --allocators. "mf2" alone runs
# with the environment's (default) policy.
MF2_VARIANTS = {
    "mf2-route_s": {"MF2_ROUTE": "route_s", "MF2_RECLAIM_IDLE": "0"},  # the design note's Route S
    "mf2-route_s+reclaim": {"MF2_ROUTE": "route_s", "MF2_RECLAIM_IDLE": "1"},
    "mf2-route_p": {"MF2_ROUTE": "route_p", "MF2_RECLAIM_IDLE": "1"},
    "mf2-cda": {"MF2_ROUTE": "cda", "MF2_RECLAIM_IDLE": "1"},
    # Route P without the owner-partial gate (an experiment, see mf2/policy.h).
    "mf2-route_p-nopartial": {"MF2_ROUTE": "route_p", "MF2_RECLAIM_IDLE": "1",
                              "MF2_ADOPT_PARTIAL_GATE": "0"},
}
MF2_ENV_KEYS = ("MF2_ROUTE", "MF2_RECLAIM_IDLE", "MF2_ADOPT_PARTIAL_GATE")


def is_mf2(name):
    return name == MF2 or name in MF2_VARIANTS
BASELINE = "mimalloc"

# Where `bazel build -c opt //mf2:libmf2_malloc.so` puts the library, best first.
MF2_CANDIDATES = [
    "bazel-out/k8-opt/bin/mf2/libmf2_malloc.so",
    "bazel-bin/mf2/libmf2_malloc.so",
]


class Workload:
    """One benchmark configuration: a program, its arguments and what its number means."""

    def __init__(self, name, threads, program, args, expected_s, unit):
        self.name = name
        self.threads = threads
        self.program = program
        self.args = [str(a) for a in args]
        self.expected_s = expected_s  # rough wall time of one run, for the estimate and timeout
        self.unit = unit  # what Throughput counts per second

    @property
    def label(self):
        return "%s T=%d" % (self.name, self.threads)

    def command(self, bin_dir):
        return [os.path.join(bin_dir, self.program)] + self.args


def make_workloads(opts):
    """The workload list for the chosen mode (see README.md for the peers' command lines)."""
    quick = opts.quick
    larson_s = opts.larson_seconds if opts.larson_seconds else (1 if quick else 2)
    threads = opts.threads or ([1, 2] if quick else [1, 2, 4])
    w = []
    for t in threads:
        w.append(Workload("larson-classic", t, "larson",
                          [larson_s, 8, 1000, 5000, 100, 4141, t], larson_s + 0.2, "ops"))
    for t in threads:
        w.append(Workload("larson-mid", t, "larson",
                          [larson_s, 1024, 32768, 5000, 100, 4141, t], larson_s + 0.3, "ops"))
    xm_s = 1 if quick else 1.5
    for t in ([2] if quick else [1, 2]):
        w.append(Workload("xmalloc-test", t, "xmalloc_test",
                          ["-w", t, "-t", xm_s, "-s", 64], xm_s + 0.1, "frees"))
    # Fixed work; the peers' command is `cache-scratch T 1000 1 2000000 T` (about 3 s here).
    reps = 500000 if quick else 2000000
    w.append(Workload("cache-scratch", 2, "cache_scratch", [2, 1000, 1, reps, 2],
                      0.9 if quick else 3.4, "allocs"))
    # Fixed work; the peers' command is `mstress T 50 25` (0.2 s here): full mode makes 4x the
    # rounds (same work per round, more thread generations) so process start-up is not the noise.
    churn = [2, 50, 25] if quick else [2, 50, 100]
    w.append(Workload("thread-churn", 2, "thread_churn", churn, 0.25 if quick else 0.8, "allocs"))
    pc_s = 1 if quick else 1.5
    w.append(Workload("producer-consumer", 4, "producer_consumer", [4, pc_s, 16, 256],
                      pc_s + 0.05, "frees"))
    if opts.only:
        pattern = re.compile(opts.only)
        w = [x for x in w if pattern.search(x.label)]
    return w


def find_mf2(opts):
    """Returns (path or None, warning or None) for the MF2 preload library."""
    if opts.mf2_lib:
        if os.path.isfile(opts.mf2_lib):
            return os.path.abspath(opts.mf2_lib), None
        return None, "MF2 preload library missing: %s does not exist" % opts.mf2_lib
    for rel in MF2_CANDIDATES:
        path = os.path.join(opts.workspace, rel)
        if os.path.isfile(path):
            real = os.path.realpath(path)
            note = None
            if "-opt/" not in real:
                note = ("MF2 preload library %s is not an optimised (-c opt) build; its numbers "
                        "are not comparable" % real)
            return real, note
    return None, ("MF2 preload library missing (looked for %s under %s; build it with "
                  "`bazel build -c opt //mf2:libmf2_malloc.so`): skipping the MF2 column"
                  % (" and ".join(MF2_CANDIDATES), opts.workspace))


def package_version(name):
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", name],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


THROUGHPUT_RE = re.compile(r"^Throughput\s*=\s*([0-9.eE+-]+)", re.M)
RSS_RE = re.compile(r"^peak_rss_kib\s*=\s*(\d+)", re.M)
ELAPSED_RE = re.compile(r"^elapsed_seconds\s*=\s*([0-9.eE+-]+)", re.M)
GENERATIONS_RE = re.compile(r"^thread_generations\s*=\s*(\d+)", re.M)
STATS_FIELD_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*)\s*[=:]\s*([^\s,;]+)")


def parse_mf2_stats(stderr_text):
    """Returns (summary, reuse-rate, new-pages) from the `mf2_stats:` lines, or Nones.

    MF2 prints one `mf2_stats: <counter> <value> <description>` line per counter and a summary line
    of `key=value` fields (`reuse_rate=0.9985 new_pages=1461 ...`). Both forms are read; the
    summary's fields win. `summary` is the key=value line (or all lines joined when there is none).
    """
    fields, summary, lines = {}, None, []
    for line in stderr_text.splitlines():
        if not line.startswith("mf2_stats:"):
            continue
        body = line[len("mf2_stats:"):].strip()
        lines.append(body)
        pairs = STATS_FIELD_RE.findall(body)
        if pairs and "=" in body:
            summary = body
            for key, value in pairs:
                fields[key.lower().replace("-", "_")] = value
        else:
            words = body.split()
            if len(words) >= 2:
                fields.setdefault(words[0].lower().replace("-", "_"), words[1])
    if not lines:
        return None, None, None
    def pick(exact, part):
        if exact in fields:
            return fields[exact]
        return next((v for k, v in fields.items() if part in k), None)
    return (summary or " | ".join(lines), pick("reuse_rate", "reuse_rate"),
            pick("new_pages", "new_page"))


TIME = "/usr/bin/time"


def run_one(cmd, preload, mf2_env, timeout_s):
    """Runs one benchmark process; returns a dict of what it reported.

    Peak RSS: Linux keeps a process's ru_maxrss across exec, so a program started straight from
    this Python process would report at least Python's own RSS (about 17 MiB). The program is
    therefore started by GNU time, which forks a small child that execs `env LD_PRELOAD=... prog`;
    both the program's own `peak_rss_kib` and time's %M then measure the program alone.
    """
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.pop("MF2_STATS", None)
    if mf2_env is not None:
        env["MF2_STATS"] = "1"
        for key in MF2_ENV_KEYS:
            env.pop(key, None)
        env.update(mf2_env)
    inner = ["env"] + (["LD_PRELOAD=" + preload] if preload else []) + cmd
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(mode="r", suffix=".rss") as rss_file:
        full = [TIME, "-f", "%M", "-o", rss_file.name] + inner if os.access(TIME, os.X_OK) \
            else inner
        start = time.monotonic()
        proc = subprocess.Popen(full, stdout=out, stderr=err, env=env, start_new_session=True)
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            timed_out = True
        wall = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
        rss_text = rss_file.read().strip().splitlines()
    time_rss = int(rss_text[-1]) if rss_text and rss_text[-1].isdigit() else None
    # GNU time reports a non-zero exit as "Command exited with non-zero status N" on its -o file
    # and exits with the same status, so proc.returncode is the program's.
    result = {
        "wall_s": wall,
        "exit": proc.returncode,
        "stdout": stdout,
        "stderr": stderr,
    }
    m = THROUGHPUT_RE.search(stdout)
    result["throughput"] = float(m.group(1)) if m else None
    m = RSS_RE.search(stdout)
    result["program_rss_kib"] = int(m.group(1)) if m else None
    result["rss_kib"] = time_rss if time_rss is not None else result["program_rss_kib"]
    m = ELAPSED_RE.search(stdout)
    result["elapsed_s"] = float(m.group(1)) if m else None
    m = GENERATIONS_RE.search(stdout)
    result["generations"] = int(m.group(1)) if m else None
    result["mf2_raw"], result["mf2_reuse"], result["mf2_new_pages"] = (
        parse_mf2_stats(stderr) if mf2_env is not None else (None, None, None))
    if timed_out:
        result["status"] = "timeout"
    elif proc.returncode > 128:  # GNU time exits 128+N when the program died of signal N
        result["status"] = "signal %d" % (proc.returncode - 128)
    elif proc.returncode != 0:
        result["status"] = "exit %d" % proc.returncode
    elif result["throughput"] is None:
        result["status"] = "no throughput line"
    else:
        result["status"] = "ok"
    return result


def fmt_rate(value):
    if value is None:
        return "n/a"
    if value >= 1e6:
        return "%.2fM" % (value / 1e6)
    if value >= 1e3:
        return "%.1fk" % (value / 1e3)
    return "%.0f" % value


def fmt_mib(kib):
    return "n/a" if kib is None else "%.1f" % (kib / 1024.0)


def summarize(rows, workloads, allocators):
    """Per (workload label, allocator): medians and spread over the successful repetitions."""
    summary = {}
    for wl in workloads:
        for name in allocators:
            mine = [r for r in rows if r["workload"] == wl.label and r["allocator"] == name]
            ok = [r for r in mine if r["status"] == "ok"]
            tp = [r["throughput"] for r in ok]
            rss = [r["rss_kib"] for r in ok if r["rss_kib"] is not None]
            s = {
                "runs": len(mine),
                "ok": len(ok),
                "median": statistics.median(tp) if tp else None,
                "min": min(tp) if tp else None,
                "max": max(tp) if tp else None,
                "rss_median": statistics.median(rss) if rss else None,
                "failures": sorted({r["status"] for r in mine if r["status"] != "ok"}),
                "mf2_reuse": None,
                "mf2_new_pages": None,
                "mf2_raw": None,
                "mf2_adoptions": None,
                "mf2_reclaimed": None,
            }
            stats = [r for r in ok if r.get("mf2_raw")]
            if stats:
                # The stats of the run whose throughput is the median (or nearest to it).
                pick = min(stats, key=lambda r: abs(r["throughput"] - s["median"]))
                s["mf2_reuse"] = pick["mf2_reuse"]
                s["mf2_new_pages"] = pick["mf2_new_pages"]
                s["mf2_raw"] = pick["mf2_raw"]
                m = re.search(r"adoptions=(\d+)", pick["mf2_raw"])
                s["mf2_adoptions"] = m.group(1) if m else None
                m = re.search(r"pages_reclaimed=(\d+)", pick["mf2_raw"])
                s["mf2_reclaimed"] = m.group(1) if m else None
            summary[(wl.label, name)] = s
        base = summary.get((wl.label, BASELINE))
        for name in allocators:
            s = summary[(wl.label, name)]
            if base and base["median"] and s["median"]:
                s["ratio"] = s["median"] / base["median"]
            else:
                s["ratio"] = None
    return summary


def markdown_tables(summary, workloads, allocators, mf2_in_run):
    lines = []
    lines.append("### Throughput: median over repetitions "
                 "(x ratio to mimalloc; ± half of (max-min)/median)")
    lines.append("")
    lines.append("| workload | unit/s | " + " | ".join(allocators) + " |")
    lines.append("|---|---|" + "---|" * len(allocators))
    for wl in workloads:
        cells = []
        for name in allocators:
            s = summary[(wl.label, name)]
            if s["median"] is None:
                cells.append("FAIL (%s)" % ", ".join(s["failures"]) if s["failures"] else "n/a")
                continue
            spread = (s["max"] - s["min"]) / s["median"] if s["median"] else 0.0
            ratio = "x%.2f" % s["ratio"] if s["ratio"] is not None else "x?"
            cell = "%s %s ±%.0f%%" % (fmt_rate(s["median"]), ratio, 50 * spread)
            if s["ok"] < s["runs"]:
                cell += " (%d/%d ok)" % (s["ok"], s["runs"])
            cells.append(cell)
        lines.append("| %s | %s | %s |" % (wl.label, wl.unit, " | ".join(cells)))
    lines.append("")
    lines.append("### Peak RSS: median ru_maxrss of the process, MiB")
    lines.append("")
    lines.append("| workload | " + " | ".join(allocators) + " |")
    lines.append("|---|" + "---|" * len(allocators))
    for wl in workloads:
        cells = [fmt_mib(summary[(wl.label, name)]["rss_median"]) for name in allocators]
        lines.append("| %s | %s |" % (wl.label, " | ".join(cells)))
    lines.append("")
    mf2_names = [a for a in allocators if is_mf2(a)]
    if mf2_names:
        lines.append("### MF2 stats (MF2_STATS=1, run nearest the median)")
        lines.append("")
        lines.append("| workload | variant | reuse rate | new pages | adoptions | pages reclaimed |")
        lines.append("|---|---|---|---|---|---|")
        for wl in workloads:
            for name in mf2_names:
                s = summary[(wl.label, name)]
                lines.append("| %s | %s | %s | %s | %s | %s |" % (
                    wl.label, name, s["mf2_reuse"] or "n/a", s["mf2_new_pages"] or "n/a",
                    s["mf2_adoptions"] or "n/a", s["mf2_reclaimed"] or "n/a"))
        lines.append("")
    return "\n".join(lines)


def busy_fraction(seconds=1.0):
    """Fraction of all CPUs' time spent non-idle over `seconds` (from /proc/stat), or None."""
    def sample():
        with open("/proc/stat") as f:
            values = [int(x) for x in f.readline().split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, total
    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 == total0:
        return None
    return 1.0 - (idle1 - idle0) / float(total1 - total0)


def gnuplot_terminal():
    if not shutil.which("gnuplot"):
        return None
    probe = subprocess.run(["gnuplot", "-e", "set terminal pngcairo"], capture_output=True,
                           text=True)
    return "pngcairo" if probe.returncode == 0 and not probe.stderr.strip() else "png"


def write_chart(out_dir, summary, workloads, allocators):
    """chart.png: clustered bars of each allocator's median throughput relative to mimalloc."""
    terminal = gnuplot_terminal()
    if terminal is None:
        return "gnuplot not found: no chart"
    data_path = os.path.join(out_dir, "chart.dat")
    with open(data_path, "w") as f:
        f.write("workload " + " ".join(allocators) + "\n")
        for wl in workloads:
            vals = []
            for name in allocators:
                r = summary[(wl.label, name)]["ratio"]
                vals.append("%.4f" % r if r is not None else "NaN")
            f.write('"%s" %s\n' % (wl.label, " ".join(vals)))
    size = "1400,600" if terminal == "pngcairo" else "1400,600"
    script = [
        "set terminal %s size %s%s" % (terminal, size,
                                       " font 'Sans,10'" if terminal == "pngcairo" else ""),
        "set output '%s'" % os.path.join(out_dir, "chart.png"),
        "set title 'Median throughput relative to mimalloc (higher is better)'",
        "set style data histogram",
        "set style histogram clustered gap 1",
        "set style fill solid 0.8 border -1",
        "set boxwidth 0.9",
        "set key outside right top",
        "set grid ytics",
        "set yrange [0:*]",
        "set ylabel 'throughput / mimalloc'",
        "set xtics rotate by -30 nomirror",
        "set datafile missing 'NaN'",
        "plot " + ", ".join(
            "'%s' using %d:xtic(1) title columnheader(%d)" % (data_path, i + 2, i + 2)
            for i in range(len(allocators))) + ", 1 with lines lc rgb 'black' dt 2 notitle",
    ]
    gp_path = os.path.join(out_dir, "chart.gp")
    with open(gp_path, "w") as f:
        f.write("\n".join(script) + "\n")
    res = subprocess.run(["gnuplot", gp_path], capture_output=True, text=True)
    if res.returncode != 0:
        return "gnuplot failed: " + res.stderr.strip()
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", required=True, help="folder with the benchmark programs")
    parser.add_argument("--workspace", required=True, help="source tree (results, bazel-bin)")
    parser.add_argument("--quick", action="store_true", help="3 reps, short runs (~2-3 min)")
    parser.add_argument("--reps", type=int, help="repetitions (default 5, quick 3)")
    parser.add_argument("--threads", type=lambda s: [int(x) for x in s.split(",")],
                        help="Larson thread counts, e.g. 1,2,4")
    parser.add_argument("--larson-seconds", type=float,
                        help="Larson sleep_seconds (default 2, quick 1; the peers use 5)")
    parser.add_argument("--allocators",
                        help="comma list among glibc,mimalloc,jemalloc,tcmalloc,mf2 and the MF2 "
                             "policy variants " + ",".join(MF2_VARIANTS))
    parser.add_argument("--only", help="regex: run only workloads whose label matches")
    parser.add_argument("--mf2-lib", help="MF2 preload library (default: found under bazel-out)")
    parser.add_argument("--out", help="results folder (default bench/results/<timestamp>)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    opts = parser.parse_args()
    reps = opts.reps or (3 if opts.quick else 5)
    if reps < 1:
        parser.error("--reps must be >= 1")

    warnings = []
    allocators = []
    for name, path in PEERS:
        if path and not os.path.isfile(path):
            warnings.append("%s library missing: %s (install %s): skipping it"
                            % (name, path, PEER_PACKAGES[name]))
            continue
        allocators.append((name, path))
    mf2_path, mf2_warning = find_mf2(opts)
    if mf2_warning:
        warnings.append(mf2_warning)
    if mf2_path:
        allocators.append((MF2, mf2_path))
        for variant in MF2_VARIANTS:
            allocators.append((variant, mf2_path))
    if opts.allocators:
        wanted = opts.allocators.split(",")
        allocators = [a for a in allocators if a[0] in wanted]
    else:
        allocators = [a for a in allocators if a[0] not in MF2_VARIANTS]
    names = [a[0] for a in allocators]
    if not allocators:
        sys.exit("no allocator to run")

    workloads = make_workloads(opts)
    for wl in workloads:
        exe = wl.command(opts.bin_dir)[0]
        if not os.access(exe, os.X_OK):
            sys.exit("benchmark program missing: %s (bazel build -c opt //bench:all)" % exe)

    for w in warnings:
        print("WARNING: " + w, file=sys.stderr)
    total_runs = reps * len(workloads) * len(allocators)
    estimate = reps * len(allocators) * sum(wl.expected_s + 0.05 for wl in workloads)
    print("Plan: %d workloads x %d allocators (%s) x %d reps = %d runs; estimated %.1f min "
          "on this machine" % (len(workloads), len(allocators), ", ".join(names), reps,
                               total_runs, estimate / 60), file=sys.stderr)
    if opts.dry_run:
        for wl in workloads:
            print("  %-24s %s" % (wl.label, " ".join(wl.command(opts.bin_dir))), file=sys.stderr)
        return

    busy_start = busy_fraction()
    if busy_start is not None and busy_start > 0.15:
        warnings.append("machine busy before the run: other processes used %.0f%% of the %d CPUs "
                        "over 1 s; expect wide spreads" % (100 * busy_start, os.cpu_count() or 0))
        print("WARNING: " + warnings[-1], file=sys.stderr)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = opts.out or os.path.join(opts.workspace, "bench", "results", stamp)
    os.makedirs(out_dir, exist_ok=True)
    raw_path = os.path.join(out_dir, "runs.csv")
    fields = ["rep", "workload", "threads", "allocator", "status", "throughput", "unit",
              "peak_rss_kib", "program_peak_rss_kib", "elapsed_s", "wall_s",
              "thread_generations", "mf2_reuse", "mf2_new_pages", "mf2_stats", "command"]
    rows = []
    started = time.monotonic()
    n = 0
    with open(raw_path, "w", newline="") as raw_file:
        writer = csv.DictWriter(raw_file, fieldnames=fields)
        writer.writeheader()
        for rep in range(1, reps + 1):
            for wl in workloads:
                shift = (rep - 1) % len(allocators)
                order = allocators[shift:] + allocators[:shift]
                for name, path in order:
                    n += 1
                    cmd = wl.command(opts.bin_dir)
                    mf2_env = MF2_VARIANTS.get(name, {}) if is_mf2(name) else None
                    res = run_one(cmd, path, mf2_env, 3 * wl.expected_s + 20)
                    if res["status"] == "ok":
                        shown = "%.2f M%s/s" % (res["throughput"] / 1e6, wl.unit)
                    else:
                        shown = "FAILED (%s)" % res["status"]
                        tail = (res["stderr"].strip().splitlines() or [""])[-1]
                        if tail:
                            shown += ": " + tail[:160]
                    print("[%d/%d] %s %s rep %d ... %s" % (n, total_runs, wl.label, name, rep,
                                                            shown), file=sys.stderr, flush=True)
                    row = {
                        "rep": rep, "workload": wl.label, "threads": wl.threads,
                        "allocator": name, "status": res["status"],
                        "throughput": res["throughput"], "unit": wl.unit,
                        "peak_rss_kib": res["rss_kib"],
                        "program_peak_rss_kib": res["program_rss_kib"],
                        "elapsed_s": res["elapsed_s"], "wall_s": "%.3f" % res["wall_s"],
                        "thread_generations": res["generations"],
                        "mf2_reuse": res["mf2_reuse"], "mf2_new_pages": res["mf2_new_pages"],
                        "mf2_stats": res["mf2_raw"],
                        "command": "".join("%s=%s " % kv for kv in sorted(
                            (MF2_VARIANTS.get(name) or {}).items())) +
                        ("LD_PRELOAD=%s " % path if path else "") + " ".join(
                            [os.path.basename(cmd[0])] + cmd[1:]),
                    }
                    writer.writerow(row)
                    raw_file.flush()
                    if is_mf2(name) or res["status"] != "ok":
                        # Full output of MF2 runs (all stats counters) and of every failed run.
                        log_dir = os.path.join(out_dir, "logs")
                        os.makedirs(log_dir, exist_ok=True)
                        log_name = "%03d-%s-%s-rep%d.log" % (
                            n, re.sub(r"[^A-Za-z0-9]+", "_", wl.label), name, rep)
                        with open(os.path.join(log_dir, log_name), "w") as log:
                            log.write("$ %s\nstatus: %s\n--- stdout\n%s--- stderr\n%s" % (
                                row["command"], res["status"], res["stdout"], res["stderr"]))
                    rows.append(dict(row, rss_kib=res["rss_kib"],
                                     throughput=res["throughput"],
                                     mf2_raw=res["mf2_raw"]))
    elapsed_min = (time.monotonic() - started) / 60

    summary = summarize(rows, workloads, names)
    with open(os.path.join(out_dir, "summary.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "unit", "allocator", "runs", "ok", "median", "min", "max",
                    "ratio_to_mimalloc", "peak_rss_kib_median", "mf2_reuse", "mf2_new_pages"])
        for wl in workloads:
            for name in names:
                s = summary[(wl.label, name)]
                w.writerow([wl.label, wl.unit, name, s["runs"], s["ok"], s["median"], s["min"],
                            s["max"], s["ratio"], s["rss_median"], s["mf2_reuse"],
                            s["mf2_new_pages"]])

    chart_problem = write_chart(out_dir, summary, workloads, names)
    tables = markdown_tables(summary, workloads, names, any(is_mf2(n) for n in names))
    header = [
        "# Head-to-head results %s" % stamp,
        "",
        "- Mode: %s, %d repetitions, interleaved (rep -> workload -> allocator, order rotated "
        "each rep), %d runs in %.1f min" % ("quick" if opts.quick else "full", reps, total_runs,
                                            elapsed_min),
        "- Machine: %s, %d CPUs, kernel %s; CPU busy with other work just before the run: %s" % (
            platform.node(), os.cpu_count() or 0, platform.release(),
            "n/a" if busy_start is None else "%.0f%%" % (100 * busy_start)),
    ]
    for name, path in allocators:
        if is_mf2(name):
            header.append("- %s: %sLD_PRELOAD=%s" % (name, "".join(
                "%s=%s " % kv for kv in sorted((MF2_VARIANTS.get(name) or {}).items())), path))
        elif path:
            header.append("- %s %s: LD_PRELOAD=%s" % (name, package_version(PEER_PACKAGES[name]),
                                                       path))
        else:
            header.append("- glibc %s: no preload" % package_version("libc6"))
    for w in warnings:
        header.append("- **WARNING: %s**" % w)
    if chart_problem:
        header.append("- chart: %s" % chart_problem)
    else:
        header.append("- chart: chart.png (ratio to mimalloc); raw runs: runs.csv")
    header.append("")
    commands = ["", "### Command lines", ""]
    for wl in workloads:
        commands.append("- %s: `%s`" % (wl.label, " ".join([wl.program] + wl.args)))
    text = "\n".join(header) + "\n" + tables + "\n".join(commands) + "\n"
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(text)
    print(text)
    for w in warnings:
        print("WARNING: " + w, file=sys.stderr)
    print("Results in %s" % out_dir, file=sys.stderr)


if __name__ == "__main__":
    main()
