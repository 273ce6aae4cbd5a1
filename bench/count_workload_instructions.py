#!/usr/bin/env python3
"""Instructions per operation of every head-to-head workload under every allocator, counted by
callgrind (valgrind --tool=callgrind): deterministic, and it needs no hardware counters.

    bazel build -c opt //bench:all //mf2:libmf2_malloc.so
    python3 bench/count_workload_instructions.py [--allocators glibc,mimalloc,...] [--threads 1,2]
        [--only REGEX] [--reps N] [--larson-seconds S] [--timed-seconds S] [--quick] [--out DIR]
        [--cache-sim [--d1 SIZE,ASSOC,LINE] [--ll SIZE,ASSOC,LINE]]

The workloads and the allocators are bench/run_h2h.py's (imported, not copied): the same program
arguments, the same names, `--allocator NAME=/path/lib.so` for any other preload library, MF2 found
under bazel-out/k8-opt. Python 3 standard library only.

Method
  * Each (workload, allocator) runs `--reps` times (default 1), one process at a time, as
    `LD_PRELOAD=<lib> valgrind --tool=callgrind <program> <args>`. Valgrind 3.19 cannot read
    clang-14's DWARF 5, so the program and the library are copies with their debug information
    stripped (`objcopy --strip-debug`, as bench/count_instructions.sh does); the code is the same.
  * Instructions: the whole process's total (callgrind's `Collected :` line, else the `summary:` /
    `totals:` line of its output file): start-up, the program's own work (random numbers, writes
    into the blocks, queues, waiting loops) and exit are included, not only malloc and free.
  * Operations: what the program itself prints (OPERATIONS below): an explicit count line where
    the program has one, else Throughput x elapsed_seconds. Instructions per operation = total
    instructions / operations; the median over the repetitions is reported.
  * MF2 runs get MF2_STATS=1; the cell adds `slow_allocs` (allocations that entered MF2's slow
    path, from its `mf2_stats:` lines) per operation. MF2 counts no allocations in total, and every
    workload makes about one malloc per operation (Larson's warm-up aside), so this is close to
    the share of allocations that took the slow path.
  * Valgrind runs the threads of a process one at a time on one core, 20-100x slower than native.
    Time-based programs therefore do far fewer operations in their run time: let them run longer
    (--larson-seconds, --timed-seconds) so that start-up and the uncounted work at the ends stay
    small. Rows with T>1 count instructions of a serialised run: locks never contend and spinning
    or yielding loops run differently from a real run on several cores; read them with care.

  * --cache-sim adds callgrind's cache simulation (`--cache-sim=yes`): data reads and writes that
    miss a simulated first-level cache (--d1, default 32 KiB, 8-way, 64-byte lines: this VM's L1d
    per core) and a simulated last level (--ll, default 1 MiB, 16-way: this VM's L2 per core, so
    an "LL miss" is a trip to the shared L3 or to memory), per operation, for the whole process
    and for the allocator's own code (the cost callgrind charges to the preloaded library's
    functions themselves; glibc's allocator shares its library with the rest of libc, so its
    row has no such columns). Deterministic like the instruction count, and what this VM's
    missing hardware counters would show: a load that misses holds the instructions after it,
    a store that misses waits in the store buffer. The threads run one at a time on one
    simulated core, so a T>1 row has no cache line moving between cores.

Output: the Markdown table (rows: workloads, columns: allocators) on stdout, and results.md and
runs.csv (one row per run) in --out (default bench/results/<timestamp>-instructions); with
--cache-sim, a second table of the misses per operation.
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run_h2h as h2h  # noqa: E402

# How each program's operations are counted, from what it prints on stdout (see its header
# comment in bench/<program>.cc): (regex of an explicit count line or None, what one operation is).
# None: Throughput x elapsed_seconds, the number the program divided to get its throughput.
OPERATIONS = {
    "larson": (re.compile(r"^allocations\s*=\s*(\d+)", re.M),
               "`allocations =`: worker replacements (one free + one malloc each); the warm-up "
               "(threads x chunks mallocs, as many replacements) is not counted"),
    "xmalloc_test": (re.compile(r"^frees\s*=\s*(\d+)", re.M),
                     "`frees =` + `leftover_frees =`: blocks freed by the consumers and, at the "
                     "end, those of the batches still queued (each malloc'd by a producer)"),
    "cache_scratch": (None, "Throughput x elapsed = threads x iterations allocations (each "
                            "malloc, repetitions/threads writes of every byte, free): fixed work "
                            "dominated by the writes"),
    "thread_churn": (re.compile(r"^allocations\s*=\s*(\d+)", re.M),
                     "`allocations =`: all allocations (each freed once, by its thread, "
                     "another or main)"),
    "producer_consumer": (None, "Throughput x elapsed = frees by stages 1..stages-1 (each "
                                "followed by a malloc, except in the last stage)"),
}

# Count lines added to the main one when present: xmalloc-test's blocks freed at exit (older
# builds of the program do not print it).
EXTRA_OPERATIONS = {
    "xmalloc_test": re.compile(r"^leftover_frees\s*=\s*(\d+)", re.M),
}

COLLECTED_RE = re.compile(r"Collected\s*:\s*(\d+)")
TOTALS_RE = re.compile(r"^(?:summary|totals):\s*(\d+)", re.M)
RESULTS_DIR = os.path.join(os.path.dirname(HERE), "bench", "results")


class UsageError(Exception):
    """A bad command line or a missing tool: the message says what."""


def parse_instructions(valgrind_stderr, callgrind_out):
    """Total instructions (Ir) of the run: valgrind's `Collected : N` line, else the callgrind
    output file's `summary:` or `totals:` line; None when neither is there."""
    m = COLLECTED_RE.search(valgrind_stderr)
    if m:
        return int(m.group(1))
    m = TOTALS_RE.search(callgrind_out or "")
    return int(m.group(1)) if m else None


# The data-cache events of a --cache-sim run (callgrind's names) and the columns they become.
MISS_EVENTS = (("D1mr", "d1_rd"), ("D1mw", "d1_wr"), ("DLmr", "ll_rd"), ("DLmw", "ll_wr"))
CACHE_RE = re.compile(r"^\d+,\d+,\d+$")


def parse_event_totals(callgrind_out):
    """{event: total} from the output file's `events:` line and its `totals:` (else `summary:`)
    line; {} when either is missing."""
    ev = re.search(r"^events:\s*(.+)$", callgrind_out or "", re.M)
    tot = (re.search(r"^totals:\s*(.+)$", callgrind_out or "", re.M) or
           re.search(r"^summary:\s*(.+)$", callgrind_out or "", re.M))
    if not ev or not tot:
        return {}
    names, values = ev.group(1).split(), [int(v) for v in tot.group(1).split()]
    return {n: (values[i] if i < len(values) else 0) for i, n in enumerate(names)}


# The C and C++ allocation entry points, by the names callgrind gives them (demangled): an
# allocator may keep them outside the sections valgrind maps to its library (tcmalloc's
# `google_malloc` section shows up as object `???`), so they count as the allocator's wherever
# they are.
ENTRY_POINT_RE = re.compile(
    r"^(?:malloc|free|cfree|calloc|realloc|reallocarray|posix_memalign|aligned_alloc|memalign|"
    r"valloc|pvalloc|malloc_usable_size|tc_\w+|operator (?:new|delete)(?:\[\])?\(.*)$")


def allocator_self_cost(callgrind_out, library):
    """{event: cost} that callgrind charged to the allocator's own code: to the functions of the
    object `library` themselves (their callees excluded) and to the entry points (ENTRY_POINT_RE)
    in any object.

    The format (valgrind's docs/callgrind-format): `ob=` names the object of the functions that
    follow, `fn=` the function, each as `(id) name` the first time and `(id)` after (`cob=` and
    `cfn=`, a call's callee, share the ids); a cost line is the `positions:` fields then one
    number per event (missing trailing ones are zero); the cost line after a `calls=` line is the
    call's inclusive cost, charged to the callee, not to the caller's own code."""
    wanted = {library, os.path.realpath(library)}
    positions = 1
    events = []
    names = {"ob": {}, "fn": {}}
    current = {"ob": "", "fn": ""}
    cost = {}
    skip_next = False
    mine = False
    for line in (callgrind_out or "").splitlines():
        if not line:
            continue
        if line[0].isdigit() or line[0] in "+-*":
            if skip_next:
                skip_next = False
            elif mine:
                for name, value in zip(events, line.split()[positions:]):
                    cost[name] = cost.get(name, 0) + int(value)
            continue
        key, _, value = line.partition("=")
        if key == "calls":
            skip_next = True
            continue
        space = {"ob": "ob", "cob": "ob", "fn": "fn", "cfn": "fn"}.get(key)
        if space is not None:
            m = re.match(r"\((\d+)\)\s*(.*)$", value)
            if m and m.group(2):
                names[space][m.group(1)] = m.group(2)
            if key in ("ob", "fn"):
                current[key] = names[space].get(m.group(1), m.group(1)) if m else value.strip()
                mine = (current["ob"] in wanted or os.path.realpath(current["ob"]) in wanted or
                        bool(ENTRY_POINT_RE.match(current["fn"])))
        elif line.startswith("positions:"):
            positions = len(line.split(":", 1)[1].split())
        elif line.startswith("events:"):
            events = line.split(":", 1)[1].split()
    return {ev: cost.get(ev, 0) for ev in events}


def misses_per_op(callgrind_out, operations, library):
    """The MISS_EVENTS columns per operation for the whole process, and `lib_`-prefixed for the
    allocator's own code (self_costs; None without a preloaded `library`); {} without cache
    events."""
    totals = parse_event_totals(callgrind_out)
    if not operations or any(ev not in totals for ev, _ in MISS_EVENTS):
        return {}
    out = {col: totals[ev] / operations for ev, col in MISS_EVENTS}
    if library is not None:
        mine = allocator_self_cost(callgrind_out, library)
        out.update({"lib_" + col: mine.get(ev, 0) / operations for ev, col in MISS_EVENTS})
    return out


def parse_operations(program, stdout):
    """(operations, source) from a benchmark's stdout; (None, reason) when they are missing."""
    line_re, _ = OPERATIONS.get(program, (None, None))
    if line_re is not None:
        m = line_re.search(stdout)
        if m:
            n, source = int(m.group(1)), line_re.pattern.strip("^").split("\\s")[0] + " line"
            extra = EXTRA_OPERATIONS.get(program)
            e = extra.search(stdout) if extra is not None else None
            if e:
                n += int(e.group(1))
                source += " + " + extra.pattern.strip("^").split("\\s")[0]
            return n, source
        return None, "no count line (%s)" % line_re.pattern
    tp = h2h.THROUGHPUT_RE.search(stdout)
    el = h2h.ELAPSED_RE.search(stdout)
    if not tp or not el:
        return None, "no Throughput or elapsed_seconds line"
    return int(round(float(tp.group(1)) * float(el.group(1)))), "throughput x elapsed"


def mf2_slow_allocs(stderr_text):
    """MF2's `slow_allocs` counter from its `mf2_stats:` lines, or None."""
    fields, _, _ = h2h.mf2_stats_fields(stderr_text)
    try:
        return int(fields["slow_allocs"])
    except (KeyError, ValueError):
        return None


def strip_copy(path, tmp_dir):
    """A copy of `path` without debug information in tmp_dir (made once); None stays None."""
    if path is None:
        return None
    copy = os.path.join(tmp_dir, "%x-%s" % (abs(hash(path)) & 0xffffff, os.path.basename(path)))
    if not os.path.exists(copy):
        res = subprocess.run(["objcopy", "--strip-debug", path, copy], capture_output=True,
                             text=True)
        if res.returncode != 0:
            raise UsageError("objcopy --strip-debug %s failed: %s" % (path, res.stderr.strip()))
        shutil.copymode(path, copy)
    return copy


def run_counted(cmd, preload, mf2_env, timeout_s, out_file, valgrind_args=()):
    """Runs cmd under callgrind (with `valgrind_args` after the tool's own options); returns
    (status, stdout, stderr, callgrind output text)."""
    env = dict(os.environ)
    for key in ("LD_PRELOAD", "MF2_STATS", "MF2_STATS_FILE") + h2h.MF2_ENV_KEYS:
        env.pop(key, None)
    if preload:
        env["LD_PRELOAD"] = preload
    if mf2_env is not None:
        env["MF2_STATS"] = "1"
        env.update(mf2_env)
    full = (["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out_file] +
            list(valgrind_args) + cmd)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(full, stdout=out, stderr=err, env=env, start_new_session=True)
        try:
            proc.wait(timeout=timeout_s)
            status = "ok" if proc.returncode == 0 else "exit %d" % proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            status = "timeout"
        except BaseException:
            # Interrupted (Ctrl-C): valgrind runs in its own session, so it would outlive us.
            os.killpg(proc.pid, 9)
            proc.wait()
            raise
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    callgrind = ""
    if os.path.exists(out_file):
        with open(out_file, errors="replace") as f:
            callgrind = f.read()
        os.remove(out_file)
    return status, stdout, stderr, callgrind


def fmt_cell(value, slow_share=None):
    if value is None:
        return "n/a"
    text = "%.0f" % value if value >= 100 else "%.1f" % value
    if slow_share is not None:
        text += " (slow %.2f%%)" % (100 * slow_share)
    return text


def summarize(rows, labels, names):
    """{(label, allocator): (median Ir/op or None, median slow share or None, runs, ok runs)}."""
    summary = {}
    for label in labels:
        for name in names:
            mine = [r for r in rows if r["workload"] == label and r["allocator"] == name]
            ok = [r for r in mine if r["ir_per_op"] is not None]
            shares = [r["slow_allocs"] / r["operations"] for r in ok
                      if r["slow_allocs"] is not None]
            summary[(label, name)] = (
                statistics.median(r["ir_per_op"] for r in ok) if ok else None,
                statistics.median(shares) if shares else None, len(mine), len(ok))
    return summary


MISS_COLUMNS = [col for _, col in MISS_EVENTS] + ["lib_" + col for _, col in MISS_EVENTS]


def summarize_misses(rows, labels, names):
    """{(label, allocator): {column: median per operation or None}} over the runs that have it."""
    summary = {}
    for label in labels:
        for name in names:
            mine = [r for r in rows if r["workload"] == label and r["allocator"] == name]
            summary[(label, name)] = {}
            for col in MISS_COLUMNS:
                values = [r[col] for r in mine if r.get(col) is not None]
                summary[(label, name)][col] = statistics.median(values) if values else None
    return summary


def misses_table(summary, labels, names):
    """Rows: workload and allocator; columns: the misses per operation, whole process, then of
    the allocator's own code."""
    head = ["D1 read", "D1 write", "LL read", "LL write", "allocator D1 read", "allocator LL read",
            "allocator LL write"]
    cols = ["d1_rd", "d1_wr", "ll_rd", "ll_wr", "lib_d1_rd", "lib_ll_rd", "lib_ll_wr"]
    lines = ["| workload | allocator | " + " | ".join(head) + " |",
             "| --- | --- |" + " ---: |" * len(head)]
    for label in labels:
        for name in names:
            cell = summary[(label, name)]
            lines.append("| %s | %s | %s |" % (label, name, " | ".join(
                "" if cell[c] is None else "%.3f" % cell[c] for c in cols)))
    return "\n".join(lines) + "\n"


def markdown_table(summary, labels, names):
    lines = ["| workload | " + " | ".join(names) + " |",
             "| --- |" + " ---: |" * len(names)]
    for label in labels:
        lines.append("| %s | %s |" % (label, " | ".join(
            fmt_cell(summary[(label, n)][0], summary[(label, n)][1]) for n in names)))
    return "\n".join(lines) + "\n"


CSV_FIELDS = ["rep", "workload", "threads", "allocator", "status", "instructions", "operations",
              "operations_from", "ir_per_op", "slow_allocs"] + MISS_COLUMNS + ["wall_s",
                                                                                 "command"]


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    workspace = os.path.dirname(HERE)
    parser.add_argument("--workspace", default=workspace,
                        help="source tree, where bazel-out is (default: this script's)")
    parser.add_argument("--bin-dir", help="benchmark programs (default "
                                          "<workspace>/bazel-out/k8-opt/bin/bench)")
    parser.add_argument("--allocators",
                        help="comma list among glibc,mimalloc,jemalloc,tcmalloc,mf2, the MF2 "
                             "policy variants and the --allocator names (default: the peers, mf2 "
                             "and every --allocator)")
    parser.add_argument("--allocator", action="append", metavar="NAME=/path/lib.so",
                        help="also count this preload library under NAME (repeatable)")
    parser.add_argument("--mf2-lib", help="MF2 preload library (default: found under bazel-out)")
    parser.add_argument("--only", help="regex: only workloads whose label matches")
    parser.add_argument("--threads", type=lambda s: [int(x) for x in s.split(",")],
                        help="Larson thread counts, e.g. 1,2 (default 1,2,4)")
    parser.add_argument("--reps", type=int, default=1, help="runs per cell; the median is shown")
    parser.add_argument("--quick", action="store_true",
                        help="run_h2h's quick workloads (less fixed work)")
    parser.add_argument("--larson-seconds", type=float,
                        help="Larson run time (run_h2h's default 2, quick 1: under valgrind a "
                             "longer run dilutes start-up; e.g. 10)")
    parser.add_argument("--timed-seconds", type=float,
                        help="run time of xmalloc-test and producer-consumer (default 1.5, "
                             "quick 1; e.g. 10)")
    parser.add_argument("--out", help="results folder (default bench/results/<timestamp>-"
                                      "instructions)")
    parser.add_argument("--cache-sim", action="store_true",
                        help="also simulate the data caches and report misses per operation")
    parser.add_argument("--d1", default="32768,8,64", metavar="SIZE,ASSOC,LINE",
                        help="simulated first-level data cache (default: this VM's L1d, "
                             "32768,8,64)")
    parser.add_argument("--ll", default="1048576,16,64", metavar="SIZE,ASSOC,LINE",
                        help="simulated last-level cache (default: this VM's L2 per core, "
                             "1048576,16,64)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    return parser


def main(argv=None):
    parser = build_parser()
    opts = parser.parse_args(argv)
    if opts.reps < 1:
        parser.error("--reps must be >= 1")
    for flag in ("larson_seconds", "timed_seconds"):
        value = getattr(opts, flag)
        if value is not None and value <= 0:
            parser.error("--%s must be > 0, got %g" % (flag.replace("_", "-"), value))
    for flag in ("d1", "ll"):
        if not CACHE_RE.match(getattr(opts, flag)):
            parser.error("--%s wants SIZE,ASSOC,LINE in bytes, e.g. 32768,8,64, got %r"
                         % (flag, getattr(opts, flag)))
    valgrind_args = (["--cache-sim=yes", "--D1=" + opts.d1, "--I1=" + opts.d1,
                      "--LL=" + opts.ll] if opts.cache_sim else [])
    if opts.threads is not None and any(t < 1 for t in opts.threads):
        parser.error("--threads wants thread counts >= 1, got %s" % opts.threads)
    bin_dir = opts.bin_dir or os.path.join(opts.workspace, "bazel-out", "k8-opt", "bin", "bench")
    try:
        allocators, warnings = h2h.resolve_allocators(opts)
    except h2h.UsageError as e:
        parser.error(str(e))
    if not allocators:
        parser.error("no allocator to run")
    workloads = h2h.make_workloads(opts)
    if not workloads:
        parser.error("--only %r matches no workload" % opts.only)
    for wl in workloads:
        exe = wl.command(bin_dir)[0]
        if not os.access(exe, os.X_OK):
            sys.exit("benchmark program missing: %s (bazel build -c opt //bench:all)" % exe)
        if wl.program not in OPERATIONS:
            sys.exit("no operation count known for %s: add it to OPERATIONS" % wl.program)
    names = [name for name, _ in allocators]
    for w in warnings:
        print("WARNING: " + w, file=sys.stderr)
    total = opts.reps * len(workloads) * len(allocators)
    print("Plan: %d workloads x %d allocators (%s) x %d reps = %d callgrind runs"
          % (len(workloads), len(allocators), ", ".join(names), opts.reps, total),
          file=sys.stderr)
    if opts.dry_run:
        for wl in workloads:
            print("  %-24s %s" % (wl.label, " ".join(wl.command(bin_dir))), file=sys.stderr)
        return
    for tool, package in (("valgrind", "valgrind"), ("objcopy", "binutils")):
        if not shutil.which(tool):
            sys.exit("%s is needed (apt-get install %s)" % (tool, package))

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = opts.out or os.path.join(RESULTS_DIR, stamp + "-instructions")
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    started = time.monotonic()
    n = 0
    with tempfile.TemporaryDirectory() as tmp, \
            open(os.path.join(out_dir, "runs.csv"), "w", newline="") as csv_file:
        writer = csv.DictWriter(csv_file, fieldnames=CSV_FIELDS)
        writer.writeheader()
        try:
            libs = {name: strip_copy(path, tmp) for name, path in allocators}
            programs = {wl.program: strip_copy(wl.command(bin_dir)[0], tmp) for wl in workloads}
        except UsageError as e:
            sys.exit(str(e))
        for rep in range(1, opts.reps + 1):
            for wl in workloads:
                for name, path in allocators:
                    n += 1
                    cmd = [programs[wl.program]] + wl.args
                    mf2_env = h2h.MF2_VARIANTS.get(name, {}) if h2h.is_mf2(name) else None
                    start = time.monotonic()
                    # Callgrind is 20-100x slower than a native run; fixed work scales with it.
                    status, stdout, stderr, callgrind = run_counted(
                        cmd, libs[name], mf2_env, 200 * wl.expected_s + 120,
                        os.path.join(tmp, "callgrind.out"), valgrind_args)
                    wall = time.monotonic() - start
                    ir = parse_instructions(stderr, callgrind)
                    ops, source = parse_operations(wl.program, stdout)
                    if status == "ok" and ir is None:
                        status = "no instruction count"
                    if status == "ok" and not ops:
                        status = "no operations (%s)" % source
                    slow = mf2_slow_allocs(stderr) if mf2_env is not None else None
                    row = {
                        "rep": rep, "workload": wl.label, "threads": wl.threads,
                        "allocator": name, "status": status, "instructions": ir,
                        "operations": ops, "operations_from": source,
                        "ir_per_op": ir / ops if status == "ok" else None,
                        "slow_allocs": slow, "wall_s": "%.1f" % wall,
                        **dict.fromkeys(MISS_COLUMNS),
                        "command": "".join("%s=%s " % kv for kv in sorted(
                            (mf2_env or {}).items())) +
                        ("LD_PRELOAD=%s " % path if path else "") + "valgrind --tool=callgrind " +
                        " ".join(valgrind_args + [wl.program] + wl.args),
                    }
                    if status == "ok" and opts.cache_sim:
                        misses = misses_per_op(callgrind, ops, libs[name])
                        if not misses:
                            status = row["status"] = "no cache events"
                            row["ir_per_op"] = None
                        row.update(misses)
                    writer.writerow(row)
                    csv_file.flush()
                    rows.append(row)
                    if status == "ok":
                        shown = "%.1f instructions/op (%d / %d)" % (row["ir_per_op"], ir, ops)
                        if opts.cache_sim:
                            shown += ", misses/op D1 %.3f rd %.3f wr, LL %.3f rd %.3f wr" % (
                                row["d1_rd"], row["d1_wr"], row["ll_rd"], row["ll_wr"])
                    else:
                        tail = (stderr.strip().splitlines() or [""])[-1]
                        shown = "FAILED (%s) %s" % (status, tail[:160])
                    print("[%d/%d] %s %s rep %d (%.0f s) ... %s"
                          % (n, total, wl.label, name, rep, wall, shown),
                          file=sys.stderr, flush=True)

    labels = [wl.label for wl in workloads]
    summary = summarize(rows, labels, names)
    text = ["# Instructions per operation (callgrind) %s" % stamp, "",
            "- %d callgrind runs (%d per cell, median shown) in %.1f min on %s, valgrind %s"
            % (total, opts.reps, (time.monotonic() - started) / 60, platform.node(),
               subprocess.run(["valgrind", "--version"], capture_output=True,
                              text=True).stdout.strip()),
            "- Cells: whole-process instructions / operations (start-up and exit included); "
            "MF2: (slow N%) = slow_allocs / operations, about the share of allocations that took "
            "MF2's slow path."]
    for name, path in allocators:
        text.append(h2h.describe_allocator(name, path))
    for w in warnings:
        text.append("- **WARNING: %s**" % w)
    failed = [(k, v) for k, v in summary.items() if v[3] < v[2]]
    for (label, name), (_, _, runs, ok) in failed:
        text.append("- **%s under %s: %d of %d runs failed (runs.csv)**" % (label, name,
                                                                             runs - ok, runs))
    text += ["", markdown_table(summary, labels, names)]
    if opts.cache_sim:
        text += ["### Data-cache misses per operation (simulated: D1 %s, LL %s)" % (opts.d1,
                                                                                    opts.ll), "",
                 "Whole process, then the allocator's own functions (callgrind's self cost of the "
                 "preloaded library). Medians over the runs, per operation.", "",
                 misses_table(summarize_misses(rows, labels, names), labels, names)]
    text += ["### Operations and command lines", ""]
    for wl in workloads:
        text.append("- %s: `%s`; operations: %s" % (wl.label, " ".join([wl.program] + wl.args),
                                                    OPERATIONS[wl.program][1]))
    text.append("")
    text.append("Valgrind runs the threads one at a time: rows with T>1 have no lock contention "
                "and their waiting loops run differently from a real run.")
    body = "\n".join(text) + "\n"
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(body)
    sys.stdout.write(body)
    print("Results in %s" % out_dir, file=sys.stderr)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
