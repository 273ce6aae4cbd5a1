#!/usr/bin/env python3
"""Head-to-head runner: every //bench program under every allocator, interleaved.

Started by run_h2h.sh (`bazel run -c opt //bench:head_to_head -- [options]`), which passes
--bin-dir (the benchmark programs) and --workspace (the source tree). Python 3 standard library
only.

Method
  * Each run is a separate process. The allocator is chosen with LD_PRELOAD (glibc: none).
    Besides the built-in peers and MF2 variants, `--allocator NAME=/path/lib.so` (repeatable)
    adds any preload library.
  * Runs are interleaved: for rep in 1..R: for workload: for allocator (the allocator order rotates
    by one each repetition so no allocator always runs right after the same neighbour). Slow drift
    of the machine (other jobs, thermal) then hits every allocator alike.
  * Each repetition preloads fresh copies of the libraries (copied into the results folder at the
    start of the repetition, all removed at the end; --same-files preloads them in place). Where
    a library's file sits in physical memory is fixed for as long as the file is cached, and it
    decides which L2/L3 sets its code competes for: four byte-identical copies of one MF2 build,
    interleaved, gave medians 40.4-44.1 Mops/s on larson-classic T=1 (7 runs each), each copy
    keeping its own level run after run. With one file per allocator that bias is the same in
    every repetition and the median keeps it; with a copy per repetition it becomes part of the
    spread and the median averages it out.
  * Per (workload, allocator): median throughput over the repetitions, min and max, median, min and
    max peak RSS (ru_maxrss of the child, measured by GNU time), ratio of the median to the
    baseline's median (mimalloc unless --baseline says otherwise).
  * A busy machine is detected, not assumed away: before the run (1 s of /proc/stat, load
    average) and during every run (CPU time the rest of the machine used while the benchmark ran:
    system-wide busy time from /proc/stat minus the benchmark's own CPU time). Warnings go to
    stderr, results.md and the chart.
  * MF2 runs (and custom libraries that export mf2_malloc) get MF2_STATS=1; the stderr lines
    starting with `mf2_stats:` are kept, and the reuse-rate and new-pages fields are reported, with
    the slow paths, cache refills and cache flushes per 100 operations (n/a when absent).

Output: bench/results/<timestamp>/ with runs.csv (one row per run), summary.csv, results.md,
chart.png (gnuplot: throughput relative to the baseline with min-max error bars, and peak RSS
with min-max error bars), logs/ (full output of MF2 runs and failed runs), and the Markdown table
on stdout. Progress goes to stderr, one line per run.
"""

import argparse
import csv
import dataclasses
import datetime
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Tuple

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
    "mf2-route_s": {"MF2_ROUTE": "route_s", "MF2_RECLAIM_IDLE": "0"},  # Route S as first specified
    "mf2-route_s+reclaim": {"MF2_ROUTE": "route_s", "MF2_RECLAIM_IDLE": "1"},
    "mf2-route_p": {"MF2_ROUTE": "route_p", "MF2_RECLAIM_IDLE": "1"},
    "mf2-cda": {"MF2_ROUTE": "cda", "MF2_RECLAIM_IDLE": "1"},
    # Route P without the owner-partial gate (an experiment, see mf2/policy.h).
    "mf2-route_p-nopartial": {"MF2_ROUTE": "route_p", "MF2_RECLAIM_IDLE": "1",
                              "MF2_ADOPT_PARTIAL_GATE": "0"},
}
MF2_ENV_KEYS = ("MF2_ROUTE", "MF2_RECLAIM_IDLE", "MF2_ADOPT_PARTIAL_GATE")


# Custom allocators (--allocator) whose library is a build of MF2: they get MF2_STATS=1 too.
CUSTOM_MF2 = set()


def is_mf2(name):
    return name == MF2 or name in MF2_VARIANTS or name in CUSTOM_MF2


BASELINE = "mimalloc"
# A run shared the machine when other processes used more than this fraction of all CPUs during it.
BUSY_FRACTION = 0.15
CUSTOM_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


class UsageError(Exception):
    """A bad command line: the message says what was wrong and what is valid."""


def builtin_names():
    return [name for name, _ in PEERS] + [MF2] + list(MF2_VARIANTS)


def parse_custom(specs):
    """[(name, absolute path)] from --allocator NAME=/path/lib.so arguments."""
    custom = []
    for spec in specs or []:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise UsageError("--allocator wants NAME=/path/to/lib.so, got %r" % spec)
        if not CUSTOM_NAME_RE.match(name):
            raise UsageError("--allocator name %r: use letters, digits and _.+- only" % name)
        if name in builtin_names() or name in [c[0] for c in custom]:
            raise UsageError("--allocator name %r is taken (built-in names: %s)"
                             % (name, ", ".join(builtin_names())))
        if not os.path.isfile(path):
            raise UsageError("--allocator %s: no such file %s" % (name, path))
        custom.append((name, os.path.abspath(path)))
    return custom


def library_is_mf2(path):
    """Whether the shared library exports MF2's C API (so MF2_STATS=1 applies to it)."""
    try:
        with open(path, "rb") as f:
            return b"\0mf2_malloc\0" in f.read()
    except OSError:
        return False


def resolve_allocators(opts):
    """Returns ([(name, preload path or None)], [warning]) for the run.

    Without --allocators: the peers, MF2 and every --allocator. With it: exactly the names it
    lists, in its order, then any --allocator it does not list. An unknown name is a UsageError
    listing the valid ones; a listed built-in whose library is missing is skipped with a warning.
    """
    custom = parse_custom(opts.allocator)
    valid = builtin_names() + [name for name, _ in custom]
    wanted = None
    if opts.allocators:
        wanted = []
        for name in (w.strip() for w in opts.allocators.split(",")):
            if name and name not in wanted:
                wanted.append(name)
        unknown = [w for w in wanted if w not in valid]
        if unknown:
            raise UsageError("unknown allocator%s %s in --allocators; valid: %s (add any other "
                             "library with --allocator NAME=/path/lib.so)"
                             % ("s" if len(unknown) > 1 else "", ", ".join(unknown),
                                ", ".join(valid)))
        if not wanted:
            raise UsageError("--allocators is empty; valid: %s" % ", ".join(valid))

    def needed(name):
        return name in wanted if wanted is not None else name not in MF2_VARIANTS

    warnings = []
    available = {}
    for name, path in PEERS:
        if path and not os.path.isfile(path):
            if needed(name):
                warnings.append("%s library missing: %s (install %s): skipping it"
                                % (name, path, PEER_PACKAGES[name]))
            continue
        available[name] = path
    if any(needed(n) for n in [MF2] + list(MF2_VARIANTS)):
        mf2_path, mf2_warning = find_mf2(opts)
        if mf2_warning:
            warnings.append(mf2_warning)
        if mf2_path:
            for name in [MF2] + list(MF2_VARIANTS):
                available[name] = mf2_path
    for name, path in custom:
        available[name] = path
        if library_is_mf2(path):
            CUSTOM_MF2.add(name)
    order = wanted if wanted is not None else builtin_names() + [name for name, _ in custom]
    allocators = [(name, available[name]) for name in order
                  if name in available and needed(name)]
    allocators += [(name, path) for name, path in custom
                   if name not in [a[0] for a in allocators]]
    return allocators, warnings


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
    # The other time-based programs (--timed-seconds; count_workload_instructions.py runs them
    # longer under valgrind).
    timed_s = opts.timed_seconds if opts.timed_seconds else (1 if quick else 1.5)
    for t in ([2] if quick else [1, 2]):
        w.append(Workload("xmalloc-test", t, "xmalloc_test",
                          ["-w", t, "-t", timed_s, "-s", 64], timed_s + 0.1, "frees"))
    # Fixed work; the peers' command is `cache-scratch T 1000 1 2000000 T` (about 3 s here).
    reps = 500000 if quick else 2000000
    w.append(Workload("cache-scratch", 2, "cache_scratch", [2, 1000, 1, reps, 2],
                      0.9 if quick else 3.4, "allocs"))
    # Fixed work; the peers' command is `mstress T 50 25` (0.2 s here): full mode makes 4x the
    # rounds (same work per round, more thread generations) so process start-up is not the noise.
    churn = [2, 50, 25] if quick else [2, 50, 100]
    w.append(Workload("thread-churn", 2, "thread_churn", churn, 0.25 if quick else 0.8, "allocs"))
    # Two stages, one per CPU here: every message is freed on the other CPU, and neither stage
    # shares its CPU; then the usual four, two per CPU.
    for t in (2, 4):
        w.append(Workload("producer-consumer", t, "producer_consumer", [t, timed_s, 16, 256],
                          timed_s + 0.05, "frees"))
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


def key_values(text):
    """{lower-case name: value string} of the `name=value` (or `name: value`) fields in `text`."""
    return {key.lower().replace("-", "_"): value for key, value in STATS_FIELD_RE.findall(text)}


def mf2_stats_fields(stderr_text):
    """Returns (fields, summary, lines) from the `mf2_stats:` lines: {lower-case name: value
    string}, the key=value line or None, and every line's text after the prefix.

    MF2 prints a header, memory lines, one `mf2_stats:   <counter> <value> <description>` line per
    counter and a line of `key=value` fields (`route=route_s reuse_rate=0.9985 new_pages=1461 ...`).
    Counter lines and the key=value line are read; the latter's fields win.
    """
    fields, summary, lines = {}, None, []
    for line in stderr_text.splitlines():
        if not line.startswith("mf2_stats:"):
            continue
        body = line[len("mf2_stats:"):].strip()
        lines.append(body)
        pairs = key_values(body)
        if pairs and "=" in body:
            summary = body
            fields.update(pairs)
        else:
            words = body.split()
            if len(words) >= 2 and words[1].isdigit():  # a counter line, not a memory line
                fields.setdefault(words[0].lower().replace("-", "_"), words[1])
    return fields, summary, lines


def parse_mf2_stats(stderr_text):
    """Returns (summary, reuse-rate, new-pages) from the `mf2_stats:` lines (mf2_stats_fields), or
    Nones. `summary` is the key=value line (or all lines joined when there is none)."""
    fields, summary, lines = mf2_stats_fields(stderr_text)
    if not lines:
        return None, None, None
    def pick(exact, part):
        if exact in fields:
            return fields[exact]
        return next((v for k, v in fields.items() if part in k), None)
    return (summary or " | ".join(lines), pick("reuse_rate", "reuse_rate"),
            pick("new_pages", "new_page"))


# MF2 counters of the key=value line reported per operation in the stats table: (field, label).
PER_OP_COUNTERS = (("slow_allocs", "slow paths"), ("cache_refills", "cache refills"),
                   ("cache_flushes", "cache flushes"))


def count_field(fields, key):
    """The count `fields` (key_values()) holds under `key` as a string of digits, else None."""
    value = fields.get(key)
    return value if value is not None and value.isdigit() else None


def mf2_counters_per_op(fields, throughput, elapsed_s):
    """{field: count / operations} for the PER_OP_COUNTERS that MF2's key=value fields hold
    (key_values()), the operations being throughput x elapsed_s; {} when either is unknown or
    zero."""
    try:
        ops = float(throughput) * float(elapsed_s)
    except (TypeError, ValueError):
        return {}
    if ops <= 0:
        return {}
    counts = {key: count_field(fields, key) for key, _ in PER_OP_COUNTERS}
    return {key: int(count) / ops for key, count in counts.items() if count is not None}


TIME = "/usr/bin/time"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_cpu():
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat, or None."""
    try:
        with open("/proc/stat") as f:
            values = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(values) < 5:
        return None
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal (guest is in user)
    return (total - values[3] - values[4]) / CLOCK_TICKS, total / CLOCK_TICKS


def children_cpu_seconds():
    """User + system CPU seconds of this process's waited-for children (and theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def others_fraction(before, after, own_cpu_s):
    """Fraction of all CPUs' time that processes other than the benchmark used between two
    machine_cpu() samples, given the benchmark's own CPU seconds; None if unknown."""
    if before is None or after is None:
        return None
    busy = after[0] - before[0]
    total = after[1] - before[1]
    if total <= 0:
        return None
    return min(1.0, max(0.0, (busy - own_cpu_s) / total))


@dataclasses.dataclass
class RunResult:
    """What one benchmark process reported (run_one); None where it did not say."""

    status: str  # "ok", "timeout", "signal N", "exit N" or "no throughput line"
    wall_s: float
    others_cpu: Optional[float]  # others_fraction() during the run
    exit: Optional[int]
    stdout: str
    stderr: str
    throughput: Optional[float] = None  # the program's `Throughput =` line
    program_rss_kib: Optional[int] = None  # the program's own `peak_rss_kib =` line
    rss_kib: Optional[int] = None  # GNU time's %M, else the program's own figure
    elapsed_s: Optional[float] = None
    generations: Optional[int] = None
    mf2_raw: Optional[str] = None  # parse_mf2_stats() of stderr, for MF2 runs only
    mf2_reuse: Optional[str] = None
    mf2_new_pages: Optional[str] = None


def parse_run(stdout, stderr, returncode, timed_out, wall_s, others_cpu, time_rss, mf2):
    """The RunResult of a finished process: its output, exit status (GNU time's: 128+N when the
    program died of signal N), whether it was killed at the timeout, its wall time, the machine's
    load meanwhile, GNU time's peak RSS (or None) and whether it ran MF2 (stats are read)."""
    res = RunResult(status="ok", wall_s=wall_s, others_cpu=others_cpu, exit=returncode,
                    stdout=stdout, stderr=stderr)
    m = THROUGHPUT_RE.search(stdout)
    res.throughput = float(m.group(1)) if m else None
    m = RSS_RE.search(stdout)
    res.program_rss_kib = int(m.group(1)) if m else None
    res.rss_kib = time_rss if time_rss is not None else res.program_rss_kib
    m = ELAPSED_RE.search(stdout)
    res.elapsed_s = float(m.group(1)) if m else None
    m = GENERATIONS_RE.search(stdout)
    res.generations = int(m.group(1)) if m else None
    if mf2:
        res.mf2_raw, res.mf2_reuse, res.mf2_new_pages = parse_mf2_stats(stderr)
    if timed_out:
        res.status = "timeout"
    elif returncode > 128:  # GNU time exits 128+N when the program died of signal N
        res.status = "signal %d" % (returncode - 128)
    elif returncode != 0:
        res.status = "exit %d" % returncode
    elif res.throughput is None:
        res.status = "no throughput line"
    return res


def run_one(cmd, preload, mf2_env, timeout_s):
    """Runs one benchmark process; returns its RunResult.

    Peak RSS: Linux keeps a process's ru_maxrss across exec, so a program started straight from
    this Python process would report at least Python's own RSS (about 17 MiB). The program is
    therefore started by GNU time, which forks a small child that execs `env LD_PRELOAD=... prog`;
    both the program's own `peak_rss_kib` and time's %M then measure the program alone.
    """
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.pop("MF2_STATS_FILE", None)
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
        cpu_before = machine_cpu()
        children_before = children_cpu_seconds()
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
        others = others_fraction(cpu_before, machine_cpu(),
                                 children_cpu_seconds() - children_before)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
        rss_text = rss_file.read().strip().splitlines()
    time_rss = int(rss_text[-1]) if rss_text and rss_text[-1].isdigit() else None
    # GNU time reports a non-zero exit as "Command exited with non-zero status N" on its -o file
    # and exits with the same status, so proc.returncode is the program's.
    return parse_run(stdout, stderr, proc.returncode, timed_out, wall, others, time_rss,
                     mf2_env is not None)


PROBE_PROGRAM = "core_latency"


def probe_roundtrip(bin_dir):
    """The cross-CPU round trip in ns that core_latency measures now, or None when the program is
    missing, fails or finds fewer than two CPUs."""
    path = os.path.join(bin_dir, PROBE_PROGRAM)
    if not os.access(path, os.X_OK):
        return None
    try:
        res = subprocess.run([path], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"^roundtrip_ns = ([0-9.]+)$", res.stdout, re.M)
    return float(m.group(1)) if res.returncode == 0 and m else None


# Two states of the machine, by the round trip before each run: told apart only when the sorted
# round trips have a gap of at least this factor between two neighbours.
MODE_GAP = 2.0


def latency_split(values):
    """The round trip (ns) that separates the two states of the machine seen in `values`: the
    geometric middle of the widest gap between neighbours in sorted order, if that gap is at least
    MODE_GAP (ratio of the larger to the smaller); else None (one state)."""
    xs = sorted(v for v in values if v is not None and v > 0)
    best = None
    for a, b in zip(xs, xs[1:]):
        if b / a >= MODE_GAP and (best is None or b / a > best[1] / best[0]):
            best = (a, b)
    return None if best is None else (best[0] * best[1]) ** 0.5


def latency_table(rows, workloads, names):
    """results.md's section on the machine's state during the runs (the round trip core_latency
    measured before each): the split, and each allocator's median throughput in each state.
    Empty when no run was probed."""
    probed = [r for r in rows if r.get("roundtrip_ns") is not None]
    if not probed:
        return ""
    values = [r["roundtrip_ns"] for r in probed]
    split = latency_split(values)
    lines = ["", "### Cross-CPU round trip before each run (`%s`)" % PROBE_PROGRAM, ""]
    xs = sorted(values)
    lines.append("Round trip over %d runs: median %.0f ns (%.0f-%.0f)." % (
        len(xs), statistics.median(xs), xs[0], xs[-1]))
    if split is None:
        lines.append("One state of the machine throughout (no gap of %gx between round trips)."
                     % MODE_GAP)
        return "\n".join(lines) + "\n"
    near = sum(1 for v in values if v < split)
    lines.append("Two states of the machine: near (round trip below %.0f ns, %d runs) and far "
                 "(%d runs). Median throughput per second in each (runs):"
                 % (split, near, len(values) - near))
    lines += ["", "| workload | state | " + " | ".join(names) + " |",
              "|---|---|" + "---|" * len(names)]
    for wl in workloads:
        mine = [r for r in probed if r["workload"] == wl.label]
        if not mine:
            continue
        for state, test in (("near", lambda v: v < split), ("far", lambda v: v >= split)):
            cells = []
            for name in names:
                got = [r["throughput"] for r in mine if r["allocator"] == name and
                       test(r["roundtrip_ns"]) and r.get("throughput")]
                cells.append("%s (%d)" % (fmt_rate(statistics.median(got)), len(got)) if got
                             else "-")
            lines.append("| %s | %s | %s |" % (wl.label, state, " | ".join(cells)))
    return "\n".join(lines) + "\n"


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


def summarize(rows, workloads, allocators, baseline):
    """Per (workload label, allocator): medians and spread over the successful repetitions.

    `ratio`, `ratio_min` and `ratio_max` are the median, min and max throughput over the
    baseline's median (None when either is missing); `busy_runs` counts runs during which other
    processes used more than BUSY_FRACTION of the CPUs.
    """
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
                "rss_min": min(rss) if rss else None,
                "rss_max": max(rss) if rss else None,
                "busy_runs": sum(1 for r in mine if (r.get("others_cpu") or 0) > BUSY_FRACTION),
                "failures": sorted({r["status"] for r in mine if r["status"] != "ok"}),
                "mf2_reuse": None,
                "mf2_new_pages": None,
                "mf2_raw": None,
                "mf2_adoptions": None,
                "mf2_reclaimed": None,
                "mf2_per_op": {},
            }
            stats = [r for r in ok if r.get("mf2_raw")]
            if stats:
                # The stats of the run whose throughput is the median (or nearest to it).
                pick = min(stats, key=lambda r: abs(r["throughput"] - s["median"]))
                s["mf2_reuse"] = pick["mf2_reuse"]
                s["mf2_new_pages"] = pick["mf2_new_pages"]
                s["mf2_raw"] = pick["mf2_raw"]
                fields = key_values(pick["mf2_raw"])
                s["mf2_adoptions"] = count_field(fields, "adoptions")
                s["mf2_reclaimed"] = count_field(fields, "pages_reclaimed")
                s["mf2_per_op"] = mf2_counters_per_op(fields, pick["throughput"],
                                                      pick.get("elapsed_s"))
            summary[(wl.label, name)] = s
        base = summary.get((wl.label, baseline))
        for name in allocators:
            s = summary[(wl.label, name)]
            s["ratio"] = s["ratio_min"] = s["ratio_max"] = None
            if base and base["median"] and s["median"]:
                s["ratio"] = s["median"] / base["median"]
                s["ratio_min"] = s["min"] / base["median"]
                s["ratio_max"] = s["max"] / base["median"]
    return summary


def markdown_tables(summary, workloads, allocators, baseline):
    lines = []
    lines.append("### Throughput: median over repetitions "
                 "(x ratio to %s; ± half of (max-min)/median)" % baseline)
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
            if s["busy_runs"]:
                cell += " (busy %d/%d)" % (s["busy_runs"], s["runs"])
            cells.append(cell)
        lines.append("| %s | %s | %s |" % (wl.label, wl.unit, " | ".join(cells)))
    lines.append("")
    lines.append("### Peak RSS: median ru_maxrss of the process, MiB (min-max)")
    lines.append("")
    lines.append("| workload | " + " | ".join(allocators) + " |")
    lines.append("|---|" + "---|" * len(allocators))
    for wl in workloads:
        cells = []
        for name in allocators:
            s = summary[(wl.label, name)]
            cell = fmt_mib(s["rss_median"])
            if s["rss_min"] is not None and s["rss_max"] != s["rss_min"]:
                cell += " (%s-%s)" % (fmt_mib(s["rss_min"]), fmt_mib(s["rss_max"]))
            cells.append(cell)
        lines.append("| %s | %s |" % (wl.label, " | ".join(cells)))
    lines.append("")
    mf2_names = [a for a in allocators if is_mf2(a)]
    if mf2_names:
        lines.append("### MF2 stats (MF2_STATS=1, run nearest the median)")
        lines.append("")
        lines.append("| workload | variant | reuse rate | new pages | adoptions "
                     "| pages reclaimed | %s |" % " | ".join(
                         "%s per 100 ops" % label for _, label in PER_OP_COUNTERS))
        lines.append("|---|---|---|---|---|---|%s" % ("---|" * len(PER_OP_COUNTERS)))
        for wl in workloads:
            for name in mf2_names:
                s = summary[(wl.label, name)]
                per_op = s["mf2_per_op"]
                lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                    wl.label, name, s["mf2_reuse"] or "n/a", s["mf2_new_pages"] or "n/a",
                    s["mf2_adoptions"] or "n/a", s["mf2_reclaimed"] or "n/a",
                    " | ".join("n/a" if per_op.get(key) is None else "%.3f" % (100 * per_op[key])
                               for key, _ in PER_OP_COUNTERS)))
        lines.append("")
        lines.append("Per 100 ops: the counter over the operations of that run (throughput x "
                     "elapsed); every workload makes about one allocation per operation, so "
                     "slow paths per 100 ops is about the share of allocations that missed the "
                     "thread's cache.")
        lines.append("")
    return "\n".join(lines)


def chart_warning(rows, busy_start):
    """A one-line busy-machine warning short enough for the chart's top, or None."""
    busy = sum(1 for r in rows if (r.get("others_cpu") or 0) > BUSY_FRACTION)
    parts = []
    if busy_start is not None and busy_start > BUSY_FRACTION:
        parts.append("%.0f%% of the CPUs busy with other work before the run" % (100 * busy_start))
    if busy:
        parts.append("%d of %d runs shared the CPUs" % (busy, len(rows)))
    if not parts:
        return None
    return "busy machine: " + ", ".join(parts) + " (see results.md)"


def busy_warnings(rows):
    """Warnings about runs that shared the machine with other work (empty if none did)."""
    measured = [r["others_cpu"] for r in rows if r.get("others_cpu") is not None]
    busy = [v for v in measured if v > BUSY_FRACTION]
    if not busy:
        return []
    return ["busy machine: during %d of %d runs other processes used more than %.0f%% of the "
            "CPUs (median of all runs %.0f%%, worst %.0f%%); those numbers are not worth "
            "comparing (cells marked 'busy')"
            % (len(busy), len(measured), 100 * BUSY_FRACTION,
               100 * statistics.median(measured), 100 * max(measured))]


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


def gnuplot_string(text):
    """A gnuplot single-quoted string literal."""
    return "'" + text.replace("'", "''") + "'"


def write_chart(out_dir, summary, workloads, allocators, baseline, warning=None):
    """chart.png, two panels: each allocator's median throughput relative to the baseline's
    median, and its median peak RSS; error bars span the min and max over the repetitions.
    `warning` (a busy machine) is printed in red above both."""
    terminal = gnuplot_terminal()
    if terminal is None:
        return "gnuplot not found: no chart"
    data_path = os.path.join(out_dir, "chart.dat")
    with open(data_path, "w") as f:
        f.write("# workload, then per allocator: ratio ratio_min ratio_max rss_mib rss_min "
                "rss_max (NaN: no successful run)\n")
        for wl in workloads:
            vals = []
            for name in allocators:
                s = summary[(wl.label, name)]
                for key in ("ratio", "ratio_min", "ratio_max"):
                    vals.append("%.4f" % s[key] if s[key] is not None else "NaN")
                for key in ("rss_median", "rss_min", "rss_max"):
                    vals.append("%.2f" % (s[key] / 1024.0) if s[key] is not None else "NaN")
            f.write('"%s" %s\n' % (wl.label, " ".join(vals)))
    width, height = 1400, 1100
    script = [
        "set terminal %s size %d,%d%s" % (terminal, width, height,
                                          " font 'Sans,10'" if terminal == "pngcairo" else ""),
        "set output %s" % gnuplot_string(os.path.join(out_dir, "chart.png")),
        "set style data histogram",
        "set style histogram errorbars gap 1 lw 1",
        "set style fill solid 0.8 border -1",
        "set boxwidth 0.9",
        "set key outside right top",
        "set grid ytics",
        "set xtics rotate by -30 nomirror",
        "set datafile missing 'NaN'",
        "set yrange [0:*]",
    ]
    if warning:
        script.append("set label 1 %s at screen 0.5,0.985 center textcolor rgb 'red'"
                      % gnuplot_string("WARNING: " + warning))
    script.append("set multiplot layout 2,1 margins 0.07,0.85,0.1,0.94 spacing 0,0.12")

    def plot(first_col, title, ylabel, extra=""):
        clauses = []
        for i, name in enumerate(allocators):
            col = first_col + 6 * i
            clauses.append("%s using %d:%d:%d%s title %s" % (
                gnuplot_string(data_path) if i == 0 else "''", col, col + 1, col + 2,
                ":xtic(1)" if i == 0 else "", gnuplot_string(name)))
        return ["set title %s" % gnuplot_string(title), "set ylabel %s" % gnuplot_string(ylabel),
                "plot " + ", ".join(clauses) + extra]

    script += plot(2, "Throughput relative to %s's median (higher is better; bars: min-max over "
                   "repetitions)" % baseline, "throughput / %s" % baseline,
                   ", 1 with lines lc rgb 'black' dt 2 notitle")
    script.append("unset label 1")
    script += plot(5, "Peak RSS, median (lower is better; bars: min-max)", "MiB")
    script.append("unset multiplot")
    gp_path = os.path.join(out_dir, "chart.gp")
    with open(gp_path, "w") as f:
        f.write("\n".join(script) + "\n")
    res = subprocess.run(["gnuplot", gp_path], capture_output=True, text=True)
    if res.returncode != 0:
        return "gnuplot failed: " + res.stderr.strip()
    return None


def build_parser():
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
    parser.add_argument("--timed-seconds", type=float,
                        help="run time of xmalloc-test and producer-consumer (default 1.5, "
                             "quick 1)")
    parser.add_argument("--allocators",
                        help="comma list of the allocators to run, in order, among "
                             "glibc,mimalloc,jemalloc,tcmalloc,mf2, the MF2 policy variants "
                             + ",".join(MF2_VARIANTS) + " and the --allocator names (default: "
                             "the peers, mf2 and every --allocator)")
    parser.add_argument("--allocator", action="append", metavar="NAME=/path/lib.so",
                        help="also run this preload library under NAME (repeatable)")
    parser.add_argument("--baseline",
                        help="allocator the ratios are relative to (default mimalloc, or the "
                             "first allocator when mimalloc is not in the run)")
    parser.add_argument("--paired-base", metavar="NAME",
                        help="results.md also gives every other allocator's throughput over "
                             "NAME's in the same repetition: median and range over the "
                             "repetitions (bench/paired_ratios.py), the way to compare two "
                             "builds on a noisy machine")
    parser.add_argument("--only", help="regex: run only workloads whose label matches")
    parser.add_argument("--mf2-lib", help="MF2 preload library (default: found under bazel-out)")
    parser.add_argument("--out", help="results folder (default bench/results/<timestamp>)")
    parser.add_argument("--same-files", action="store_true",
                        help="preload the libraries in place instead of a fresh copy of each per "
                             "repetition (see Method)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    return parser


def pick_baseline(opts, names):
    if opts.baseline:
        if opts.baseline not in names:
            raise UsageError("--baseline %s is not in the run (%s)"
                             % (opts.baseline, ", ".join(names)))
        return opts.baseline
    return BASELINE if BASELINE in names else names[0]


def describe_allocator(name, path):
    """One results.md line saying exactly what ran under `name`."""
    env = "".join("%s=%s " % kv for kv in sorted((MF2_VARIANTS.get(name) or {}).items()))
    if name == MF2 or name in MF2_VARIANTS:
        return "- %s: %sLD_PRELOAD=%s" % (name, env, path)
    if name in PEER_PACKAGES:
        if path is None:
            return "- glibc %s: no preload" % package_version("libc6")
        return "- %s %s: LD_PRELOAD=%s" % (name, package_version(PEER_PACKAGES[name]), path)
    real = os.path.realpath(path)
    return "- %s (--allocator%s): LD_PRELOAD=%s%s" % (
        name, ", an MF2 build: MF2_STATS=1" if is_mf2(name) else "", path,
        "" if real == path else " (%s)" % real)


@dataclasses.dataclass
class Plan:
    """What a run will do: checked options, allocators, workloads, and the warnings so far."""

    reps: int
    allocators: List[Tuple[str, Optional[str]]]  # (name, preload library or None)
    baseline: str
    workloads: List[Workload]
    warnings: List[str]

    @property
    def names(self):
        return [name for name, _ in self.allocators]

    @property
    def total_runs(self):
        return self.reps * len(self.workloads) * len(self.allocators)

    @property
    def estimate_s(self):
        return self.reps * len(self.allocators) * sum(wl.expected_s + 0.05
                                                       for wl in self.workloads)


@dataclasses.dataclass
class Measured:
    """What the runs left: one row per run (as in runs.csv, plus the raw values summarize() and
    the busy-machine checks read) and the state of the machine before them."""

    out_dir: str
    stamp: str
    rows: List[dict]
    busy_start: Optional[float]
    load: Optional[float]
    elapsed_min: float


def plan(parser, opts):
    """Checks the options and the benchmark programs, resolves allocators, workloads and the
    baseline. Command-line errors exit through parser.error (status 2); a missing program exits
    with status 1."""
    reps = opts.reps if opts.reps is not None else (3 if opts.quick else 5)
    if reps < 1:
        parser.error("--reps must be >= 1")
    try:
        allocators, warnings = resolve_allocators(opts)
        names = [a[0] for a in allocators]
        if not allocators:
            raise UsageError("no allocator to run")
        baseline = pick_baseline(opts, names)
        if opts.paired_base is not None and opts.paired_base not in names:
            raise UsageError("--paired-base %s is not in the run (%s)"
                             % (opts.paired_base, ", ".join(names)))
    except UsageError as e:
        parser.error(str(e))

    workloads = make_workloads(opts)
    if not workloads:
        parser.error("--only %r matches no workload" % opts.only)
    for wl in workloads:
        exe = wl.command(opts.bin_dir)[0]
        if not os.access(exe, os.X_OK):
            sys.exit("benchmark program missing: %s (bazel build -c opt //bench:all)" % exe)
    return Plan(reps=reps, allocators=allocators, baseline=baseline, workloads=workloads,
                warnings=warnings)


def print_plan(p, opts):
    """The plan on stderr: warnings, the one-line plan and, with --dry-run, what would run."""
    for w in p.warnings:
        print("WARNING: " + w, file=sys.stderr)
    print("Plan: %d workloads x %d allocators (%s) x %d reps = %d runs; estimated %.1f min "
          "on this machine; ratios to %s" % (len(p.workloads), len(p.allocators),
                                             ", ".join(p.names), p.reps, p.total_runs,
                                             p.estimate_s / 60, p.baseline),
          file=sys.stderr)
    if opts.dry_run:
        for name, path in p.allocators:
            print("  " + describe_allocator(name, path)[2:], file=sys.stderr)
        for wl in p.workloads:
            print("  %-24s %s" % (wl.label, " ".join(wl.command(opts.bin_dir))), file=sys.stderr)


RUNS_CSV_FIELDS = ["rep", "workload", "threads", "allocator", "status", "throughput", "unit",
                   "peak_rss_kib", "program_peak_rss_kib", "elapsed_s", "wall_s", "others_cpu",
                   "roundtrip_ns", "thread_generations", "mf2_reuse", "mf2_new_pages", "mf2_stats", "command"]


def progress_line(n, total_runs, wl, name, rep, res):
    """The stderr line that reports run `n` of `total_runs`."""
    if res.status == "ok":
        shown = "%.2f M%s/s" % (res.throughput / 1e6, wl.unit)
    else:
        shown = "FAILED (%s)" % res.status
        tail = (res.stderr.strip().splitlines() or [""])[-1]
        if tail:
            shown += ": " + tail[:160]
    if res.others_cpu is not None and res.others_cpu > BUSY_FRACTION:
        shown += " (busy: others used %.0f%% of the CPUs)" % (100 * res.others_cpu)
    return "[%d/%d] %s %s rep %d ... %s" % (n, total_runs, wl.label, name, rep, shown)


def csv_row(rep, wl, name, path, cmd, res, roundtrip_ns=None):
    """The runs.csv row of one run (`roundtrip_ns`: core_latency's just before it, if probed)."""
    return {
        "rep": rep, "workload": wl.label, "threads": wl.threads,
        "allocator": name, "status": res.status,
        "throughput": res.throughput, "unit": wl.unit,
        "peak_rss_kib": res.rss_kib,
        "program_peak_rss_kib": res.program_rss_kib,
        "elapsed_s": res.elapsed_s, "wall_s": "%.3f" % res.wall_s,
        "others_cpu": None if res.others_cpu is None else "%.3f" % res.others_cpu,
        "roundtrip_ns": None if roundtrip_ns is None else "%.0f" % roundtrip_ns,
        "thread_generations": res.generations,
        "mf2_reuse": res.mf2_reuse, "mf2_new_pages": res.mf2_new_pages,
        "mf2_stats": res.mf2_raw,
        "command": "".join("%s=%s " % kv for kv in sorted(
            (MF2_VARIANTS.get(name) or {}).items())) +
        ("LD_PRELOAD=%s " % path if path else "") + " ".join(
            [os.path.basename(cmd[0])] + cmd[1:]),
    }


def fresh_copies(allocators, folder, rep):
    """{name: path}: a new copy of every preload library for repetition `rep`, in `folder`
    (None stays None: no preload)."""
    paths = {}
    for name, path in allocators:
        if path is None:
            paths[name] = None
            continue
        copy = os.path.join(folder, "rep%d-%s-%s" % (rep, re.sub(r"[^A-Za-z0-9_.-]+", "_", name),
                                                      os.path.basename(path)))
        shutil.copyfile(path, copy)
        paths[name] = copy
    return paths


def run(p, opts):
    """Measures the machine's load, then runs every (rep, workload, allocator), interleaved with
    the allocator order rotated each repetition; writes runs.csv and logs/ as it goes and reports
    each run on stderr. A busy machine before the run is added to p.warnings."""
    busy_start = busy_fraction()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if busy_start is not None and busy_start > BUSY_FRACTION:
        p.warnings.append("machine busy before the run: other processes used %.0f%% of the %d "
                          "CPUs over 1 s (load average %.2f); expect wide spreads"
                          % (100 * busy_start, os.cpu_count() or 0, load or 0))
        print("WARNING: " + p.warnings[-1], file=sys.stderr)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = opts.out or os.path.join(opts.workspace, "bench", "results", stamp)
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    started = time.monotonic()
    n = 0
    # Copies are kept until the end: a file deleted after its repetition would hand its pages
    # straight back to the next copy.
    copies = None if opts.same_files else tempfile.mkdtemp(prefix="libs-", dir=out_dir)
    with open(os.path.join(out_dir, "runs.csv"), "w", newline="") as raw_file:
        writer = csv.DictWriter(raw_file, fieldnames=RUNS_CSV_FIELDS)
        writer.writeheader()
        for rep in range(1, p.reps + 1):
            preload = (dict(p.allocators) if copies is None
                       else fresh_copies(p.allocators, copies, rep))
            for wl in p.workloads:
                shift = (rep - 1) % len(p.allocators)
                order = p.allocators[shift:] + p.allocators[:shift]
                for name, path in order:
                    n += 1
                    cmd = wl.command(opts.bin_dir)
                    mf2_env = MF2_VARIANTS.get(name, {}) if is_mf2(name) else None
                    # Where the host has put the CPUs just now (core_latency.cc): it decides
                    # how fast threads hand each other memory (xmalloc-test T=1 has two threads).
                    roundtrip = probe_roundtrip(opts.bin_dir)
                    res = run_one(cmd, preload[name], mf2_env, 3 * wl.expected_s + 20)
                    print(progress_line(n, p.total_runs, wl, name, rep, res), file=sys.stderr,
                          flush=True)
                    row = csv_row(rep, wl, name, path, cmd, res, roundtrip)
                    writer.writerow(row)
                    raw_file.flush()
                    if is_mf2(name) or res.status != "ok":
                        # Full output of MF2 runs (all stats counters) and of every failed run.
                        log_dir = os.path.join(out_dir, "logs")
                        os.makedirs(log_dir, exist_ok=True)
                        log_name = "%03d-%s-%s-rep%d.log" % (
                            n, re.sub(r"[^A-Za-z0-9]+", "_", wl.label), name, rep)
                        with open(os.path.join(log_dir, log_name), "w") as log:
                            log.write("$ %s\nstatus: %s\n--- stdout\n%s--- stderr\n%s" % (
                                row["command"], res.status, res.stdout, res.stderr))
                    rows.append(dict(row, rss_kib=res.rss_kib, throughput=res.throughput,
                                     others_cpu=res.others_cpu, mf2_raw=res.mf2_raw,
                                     roundtrip_ns=roundtrip))
    if copies is not None:
        shutil.rmtree(copies)
    return Measured(out_dir=out_dir, stamp=stamp, rows=rows, busy_start=busy_start, load=load,
                    elapsed_min=(time.monotonic() - started) / 60)


def paired_table(out_dir, workloads, names, base):
    """results.md's section of paired ratios to `base` (--paired-base), from runs.csv."""
    import paired_ratios  # noqa: E402 (next to this file; only this option needs it)
    by_rep, _, _ = paired_ratios.read_runs(os.path.join(out_dir, "runs.csv"))
    others = [n for n in names if n != base]
    if not others:
        return ""
    return ("\n### Paired throughput ratios to %s: median (min-max) over the repetitions of "
            "each run's throughput over %s's in the same repetition\n\n%s\n"
            % (base, base, paired_ratios.table(by_rep, [wl.label for wl in workloads], others,
                                                base)))


def report(p, opts, m):
    """Writes summary.csv, chart.png and results.md into m.out_dir and prints the tables on
    stdout; warnings (including busy runs found now) go to stderr and results.md."""
    during = busy_warnings(m.rows)
    p.warnings += during
    for w in during:
        print("WARNING: " + w, file=sys.stderr)

    names, baseline, workloads = p.names, p.baseline, p.workloads
    summary = summarize(m.rows, workloads, names, baseline)
    with open(os.path.join(m.out_dir, "summary.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "unit", "allocator", "runs", "ok", "median", "min", "max",
                    "baseline", "ratio_to_baseline", "peak_rss_kib_median", "peak_rss_kib_min",
                    "peak_rss_kib_max", "busy_runs", "mf2_reuse", "mf2_new_pages"])
        for wl in workloads:
            for name in names:
                s = summary[(wl.label, name)]
                w.writerow([wl.label, wl.unit, name, s["runs"], s["ok"], s["median"], s["min"],
                            s["max"], baseline, s["ratio"], s["rss_median"], s["rss_min"],
                            s["rss_max"], s["busy_runs"], s["mf2_reuse"], s["mf2_new_pages"]])

    chart_problem = write_chart(m.out_dir, summary, workloads, names, baseline,
                                chart_warning(m.rows, m.busy_start))
    tables = markdown_tables(summary, workloads, names, baseline)
    if opts.paired_base is not None:
        tables += paired_table(m.out_dir, workloads, names, opts.paired_base)
    tables += latency_table(m.rows, workloads, names)
    header = [
        "# Head-to-head results %s" % m.stamp,
        "",
        "- Mode: %s, %d repetitions, interleaved (rep -> workload -> allocator, order rotated "
        "each rep), %d runs in %.1f min; libraries preloaded %s" % (
            "quick" if opts.quick else "full", p.reps, p.total_runs, m.elapsed_min,
            "in place (--same-files)" if opts.same_files
            else "from a fresh copy per repetition"),
        "- Machine: %s, %d CPUs, kernel %s; CPU busy with other work just before the run: %s; "
        "load average %s" % (
            platform.node(), os.cpu_count() or 0, platform.release(),
            "n/a" if m.busy_start is None else "%.0f%%" % (100 * m.busy_start),
            "n/a" if m.load is None else "%.2f" % m.load),
    ]
    for name, path in p.allocators:
        header.append(describe_allocator(name, path))
    for w in p.warnings:
        header.append("- **WARNING: %s**" % w)
    if chart_problem:
        header.append("- chart: %s" % chart_problem)
    else:
        header.append("- chart: chart.png (throughput relative to %s and peak RSS, min-max "
                      "bars); raw runs: runs.csv" % baseline)
    header.append("")
    commands = ["", "### Command lines", ""]
    for wl in workloads:
        commands.append("- %s: `%s`" % (wl.label, " ".join([wl.program] + wl.args)))
    text = "\n".join(header) + "\n" + tables + "\n".join(commands) + "\n"
    with open(os.path.join(m.out_dir, "results.md"), "w") as f:
        f.write(text)
    print(text)
    for w in p.warnings:
        print("WARNING: " + w, file=sys.stderr)
    print("Results in %s" % m.out_dir, file=sys.stderr)


def main(argv=None):
    parser = build_parser()
    opts = parser.parse_args(argv)
    p = plan(parser, opts)
    print_plan(p, opts)
    if opts.dry_run:
        return
    report(p, opts, run(p, opts))


if __name__ == "__main__":
    main()
