#!/usr/bin/env python3
"""Tests of count_workload_instructions.py that need neither valgrind nor a benchmark build: the
parsing of callgrind's totals and of each program's operation count, and a whole run in which fake
`valgrind` and `objcopy` commands (first on PATH) stand in for the real ones."""

import csv
import os
import stat
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import count_workload_instructions as cwi  # noqa: E402
import run_h2h  # noqa: E402

# Tails of real outputs (valgrind 3.19, bench/larson.cc, bench/xmalloc_test.cc, ...).
VALGRIND_STDERR = """==10603== Callgrind, a call-graph generating cache profiler
==10603== For interactive control, run 'callgrind_control -h'.
==10603==
==10603== Events    : Ir
==10603== Collected : 109518576
==10603==
==10603== I   refs:      109,518,576
"""
LARSON = """Throughput =   663959 operations per second, relative time: 1506.116s.
relative_time = 1506.116
thread_generations = 2
allocations = 672319
elapsed_seconds = 1.012591
peak_rss_kib = 42680
"""
XMALLOC = """rtime: 25.000, free/sec: 4.000 M
Throughput = 4000000 frees per second
frees = 6000123
elapsed_seconds = 1.500031
peak_rss_kib = 9000
"""
CACHE_SCRATCH = """Throughput = 2000 allocations per second
elapsed_seconds = 1.000100
peak_rss_kib = 3000
"""


class Parsing(unittest.TestCase):
    def test_instructions(self):
        self.assertEqual(cwi.parse_instructions(VALGRIND_STDERR, ""), 109518576)
        # Without the stderr line, the output file's totals (or summary) line.
        self.assertEqual(cwi.parse_instructions("", "events: Ir\nfl=x\n0 3\ntotals: 4242\n"), 4242)
        self.assertEqual(cwi.parse_instructions("", "summary: 77\n"), 77)
        self.assertIsNone(cwi.parse_instructions("==1== error\n", "events: Ir\n"))

    def test_operations_of_each_program(self):
        self.assertEqual(cwi.parse_operations("larson", LARSON), (672319, "allocations line"))
        # The blocks of the batches still queued at exit count too; a build that does not
        # print them gives the consumers' frees alone.
        self.assertEqual(cwi.parse_operations("xmalloc_test",
                                              XMALLOC + "leftover_frees = 409600\n"),
                         (6409723, "frees line + leftover_frees"))
        self.assertEqual(cwi.parse_operations("xmalloc_test", XMALLOC), (6000123, "frees line"))
        self.assertEqual(cwi.parse_operations("thread_churn",
                                              "Throughput = 5 allocations per second\n"
                                              "allocations = 1125000\n"),
                         (1125000, "allocations line"))
        # No count line: Throughput x elapsed, rounded to a whole number.
        self.assertEqual(cwi.parse_operations("cache_scratch", CACHE_SCRATCH),
                         (2000, "throughput x elapsed"))
        self.assertEqual(cwi.parse_operations("producer_consumer",
                                              "Throughput = 1000 frees per second\n"
                                              "messages_delivered = 333\n"
                                              "elapsed_seconds = 10.5\n"),
                         (10500, "throughput x elapsed"))

    def test_missing_counts_are_none_with_a_reason(self):
        ops, why = cwi.parse_operations("larson", "Throughput = 5 operations per second\n")
        self.assertIsNone(ops)
        self.assertIn("no count line", why)
        ops, why = cwi.parse_operations("cache_scratch", "Throughput = 5 allocations per second\n")
        self.assertIsNone(ops)
        self.assertIn("elapsed_seconds", why)

    def test_every_workload_program_has_an_operation_count(self):
        opts = cwi.build_parser().parse_args([])
        for wl in run_h2h.make_workloads(opts):
            self.assertIn(wl.program, cwi.OPERATIONS, wl.label)

    def test_mf2_slow_allocs(self):
        stderr = ("mf2_stats: counter    value  description\n"
                  "mf2_stats:   slow_allocs        1074  allocations that entered the slow path\n"
                  "mf2_stats:   new_pages           189  slow path forced to take a new page\n"
                  "mf2_stats: route=route_s reuse_rate=0.4538 new_pages=189\n")
        self.assertEqual(cwi.mf2_slow_allocs(stderr), 1074)
        self.assertIsNone(cwi.mf2_slow_allocs("no stats\n"))

    def test_summary_takes_the_median_and_skips_failures(self):
        def row(name, ir_per_op, slow=None, ops=1000):
            return {"workload": "w T=1", "allocator": name, "ir_per_op": ir_per_op,
                    "operations": ops, "slow_allocs": slow}
        rows = [row("mf2", 100.0, 10), row("mf2", 300.0, 30), row("mf2", 120.0, 20),
                row("glibc", None), row("glibc", 50.0)]
        s = cwi.summarize(rows, ["w T=1"], ["mf2", "glibc"])
        self.assertEqual(s[("w T=1", "mf2")], (120.0, 0.02, 3, 3))
        self.assertEqual(s[("w T=1", "glibc")], (50.0, None, 2, 1))
        table = cwi.markdown_table(s, ["w T=1"], ["mf2", "glibc"])
        self.assertIn("| w T=1 | 120 (slow 2.00%) | 50.0 |", table)


# Fake tools: `objcopy --strip-debug IN OUT` copies; `valgrind --tool=callgrind
# --callgrind-out-file=F prog args` runs prog and writes a totals line that says whether it saw
# LD_PRELOAD (so the test sees the preload reach the program's environment).
FAKE_OBJCOPY = """#!/bin/sh
cp "$2" "$3"
"""
FAKE_VALGRIND = """#!/bin/sh
[ "$1" = --tool=callgrind ] || exit 9
out=${2#--callgrind-out-file=}
shift 2
"$@" || exit $?
if [ -n "$LD_PRELOAD" ]; then echo "totals: 5000000" > "$out"; else
  echo "==1== Collected : 2000000" >&2; fi
"""
FAKE_LARSON = """#!/bin/sh
echo "Throughput = 1000 operations per second"
echo "allocations = 10000"
echo "elapsed_seconds = 10.0"
[ "$MF2_STATS" = 1 ] && echo "mf2_stats:   slow_allocs   250  allocations that entered" >&2
exit 0
"""


class FakeRun(unittest.TestCase):
    def test_run(self):
        tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        tools, bins = os.path.join(tmp, "tools"), os.path.join(tmp, "bin")
        os.mkdir(tools)
        os.mkdir(bins)
        for path, text in [(os.path.join(tools, "objcopy"), FAKE_OBJCOPY),
                           (os.path.join(tools, "valgrind"), FAKE_VALGRIND),
                           (os.path.join(bins, "larson"), FAKE_LARSON)]:
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, stat.S_IRWXU)
        # Holds the string MF2's library exports, so it counts as an MF2 build (MF2_STATS=1).
        lib = os.path.join(tmp, "libfake.so")
        with open(lib, "wb") as f:
            f.write(b"\0mf2_malloc\0")
        out = os.path.join(tmp, "out")
        env = dict(os.environ, PATH=tools + os.pathsep + os.environ.get("PATH", ""))
        res = subprocess.run(
            [sys.executable, os.path.join(HERE, "count_workload_instructions.py"), "--bin-dir",
             bins, "--workspace", tmp, "--only", "larson-classic T=1", "--reps", "2",
             "--allocators", "glibc", "--allocator", "fake=" + lib, "--out", out],
            capture_output=True, text=True, env=env)
        self.assertEqual(res.returncode, 0, res.stderr)
        with open(os.path.join(out, "runs.csv")) as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(sorted((r["allocator"], r["rep"], r["status"], r["ir_per_op"],
                                 r["slow_allocs"]) for r in rows),
                         [("fake", "1", "ok", "500.0", "250"), ("fake", "2", "ok", "500.0", "250"),
                          ("glibc", "1", "ok", "200.0", ""), ("glibc", "2", "ok", "200.0", "")])
        self.assertIn("| larson-classic T=1 | 200 | 500 (slow 2.50%) |", res.stdout)
        with open(os.path.join(out, "results.md")) as f:
            self.assertEqual(f.read(), res.stdout)

    def test_bad_values_are_errors(self):
        for args, message in [(["--reps", "0"], "--reps must be >= 1"),
                              (["--larson-seconds", "0"], "--larson-seconds must be > 0"),
                              (["--threads", "0"], "--threads wants thread counts >= 1"),
                              (["--allocators", "nosuch"], "unknown allocator nosuch")]:
            res = subprocess.run([sys.executable,
                                  os.path.join(HERE, "count_workload_instructions.py")] + args,
                                 capture_output=True, text=True)
            self.assertEqual(res.returncode, 2, args)
            self.assertIn(message, res.stderr, args)


if __name__ == "__main__":
    unittest.main()
