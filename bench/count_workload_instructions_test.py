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


# A callgrind output file of a --cache-sim run, cut down: two objects, name compression, a
# relative position, a call whose inclusive cost belongs to the callee, a short cost line.
CACHE_OUT = """# callgrind format
version: 1
positions: line
events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
summary: 1000 300 100 1 40 20 1 8 6

ob=(1) /tmp/x/lib.so
fl=(1) ???
fn=(1) free
0 10 5 2 0 3 1 0 2 1
+1 4 1 1 0 1
cob=(2) /usr/bin/prog
cfn=(2) helper
calls=1 0
0 500 200 90 1 30 18 1 6 5
ob=(2)
fn=(2) helper
0 100 30 10 0 4 2 0 1 1
ob=(1)
fn=(3) malloc
-1 6 2 0 0 2 0 0 1 0

totals: 1000 300 100 1 40 20 1 8 6
"""


class CacheSim(unittest.TestCase):
    def test_event_totals(self):
        totals = cwi.parse_event_totals(CACHE_OUT)
        self.assertEqual((totals["Ir"], totals["D1mr"], totals["DLmw"]), (1000, 40, 6))
        self.assertEqual(cwi.parse_event_totals("events: Ir\n"), {})
        # Trailing events left out of the totals line are zero.
        self.assertEqual(cwi.parse_event_totals("events: Ir Dr\ntotals: 5\n"), {"Ir": 5, "Dr": 0})

    def test_self_cost_leaves_calls_to_the_callee(self):
        mine = cwi.allocator_self_cost(CACHE_OUT, "/tmp/x/lib.so")
        # free's two lines and malloc's; not the 500 of the call into helper, nor helper's 100.
        self.assertEqual((mine["Ir"], mine["D1mr"], mine["DLmr"], mine["DLmw"]), (20, 6, 3, 1))
        # The program's own function helper, and the library's entry points free and malloc.
        self.assertEqual(cwi.allocator_self_cost(CACHE_OUT, "/usr/bin/prog")["Ir"], 120)

    def test_entry_points_count_wherever_they_are(self):
        # tcmalloc's malloc and free live in a section valgrind maps to no object (`???`).
        out = CACHE_OUT.replace("fn=(2) helper\n0 100", "fn=(4) free\n0 100")
        out = out.replace("ob=(2)\n", "ob=(5) ???\n")
        self.assertEqual(cwi.allocator_self_cost(out, "/tmp/x/lib.so")["Ir"], 120)
        for name in ["malloc", "free", "tc_malloc", "operator delete[](void*)",
                     "operator new(unsigned long)", "posix_memalign"]:
            self.assertTrue(cwi.ENTRY_POINT_RE.match(name), name)
        for name in ["helper", "mallocx_like", "operator+"]:
            self.assertFalse(cwi.ENTRY_POINT_RE.match(name), name)

    def test_misses_per_op(self):
        m = cwi.misses_per_op(CACHE_OUT, 10, "/tmp/x/lib.so")
        self.assertEqual((m["d1_rd"], m["d1_wr"], m["ll_rd"], m["ll_wr"]), (4.0, 2.0, 0.8, 0.6))
        self.assertEqual((m["lib_d1_rd"], m["lib_ll_rd"], m["lib_ll_wr"]), (0.6, 0.3, 0.1))
        # No preload library (glibc): whole-process columns only.
        self.assertNotIn("lib_d1_rd", cwi.misses_per_op(CACHE_OUT, 10, None))
        # A run without the cache simulation has no such events.
        self.assertEqual(cwi.misses_per_op("events: Ir\ntotals: 5\n", 10, None), {})

    def test_misses_table(self):
        rows = [dict({"workload": "w T=1", "allocator": "a"}, **dict.fromkeys(cwi.MISS_COLUMNS)),
                dict({"workload": "w T=1", "allocator": "a"},
                     **dict.fromkeys(cwi.MISS_COLUMNS, 0.5)),
                dict({"workload": "w T=1", "allocator": "a"},
                     **dict.fromkeys(cwi.MISS_COLUMNS, 1.5))]
        s = cwi.summarize_misses(rows, ["w T=1"], ["a"])
        self.assertEqual(s[("w T=1", "a")]["ll_rd"], 1.0)
        self.assertIn("| w T=1 | a | 1.000 | 1.000 |", cwi.misses_table(s, ["w T=1"], ["a"]))


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
sim=no
while [ "${1#--}" != "$1" ]; do [ "$1" = --cache-sim=yes ] && sim=yes; shift; done
"$@" || exit $?
if [ $sim = yes ]; then
  printf 'positions: line\\nevents: Ir D1mr D1mw DLmr DLmw\\nob=(1) %s\\nfn=(1) free\\n' \\
    "$LD_PRELOAD" > "$out"
  printf '0 1000 500 0 100\\ntotals: 3000000 20000 5000 1000 300\\n' >> "$out"
elif [ -n "$LD_PRELOAD" ]; then echo "totals: 5000000" > "$out"; else
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
    def run_with_fakes(self, lib_name, lib_bytes, args):
        """Runs the tool on larson-classic T=1 with the fake tools first on PATH and a preload
        library `lib_name` holding `lib_bytes`; returns (result, runs.csv rows, output dir)."""
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
        lib = os.path.join(tmp, lib_name + ".so")
        with open(lib, "wb") as f:
            f.write(lib_bytes)
        out = os.path.join(tmp, "out")
        env = dict(os.environ, PATH=tools + os.pathsep + os.environ.get("PATH", ""))
        res = subprocess.run(
            [sys.executable, os.path.join(HERE, "count_workload_instructions.py"), "--bin-dir",
             bins, "--workspace", tmp, "--only", "larson-classic T=1", "--allocators", "glibc",
             "--allocator", "%s=%s" % (lib_name, lib), "--out", out] + args,
            capture_output=True, text=True, env=env)
        self.assertEqual(res.returncode, 0, res.stderr)
        with open(os.path.join(out, "runs.csv")) as f:
            return res, list(csv.DictReader(f)), out

    def test_run(self):
        # Holds the string MF2's library exports, so it counts as an MF2 build (MF2_STATS=1).
        res, rows, out = self.run_with_fakes("fake", b"\0mf2_malloc\0", ["--reps", "2"])
        self.assertEqual(sorted((r["allocator"], r["rep"], r["status"], r["ir_per_op"],
                                 r["slow_allocs"]) for r in rows),
                         [("fake", "1", "ok", "500.0", "250"), ("fake", "2", "ok", "500.0", "250"),
                          ("glibc", "1", "ok", "200.0", ""), ("glibc", "2", "ok", "200.0", "")])
        self.assertIn("| larson-classic T=1 | 200 | 500 (slow 2.50%) |", res.stdout)
        with open(os.path.join(out, "results.md")) as f:
            self.assertEqual(f.read(), res.stdout)

    def test_cache_sim_run(self):
        res, listed, _ = self.run_with_fakes("other", b"\0", ["--cache-sim"])
        rows = {r["allocator"]: r for r in listed}
        # 10,000 operations: 20,000 D1 read misses are 2 a operation; the library's own 1,000
        # instructions carry 500 of them, and 100 of the LL read misses.
        self.assertEqual((rows["other"]["ir_per_op"], rows["other"]["d1_rd"],
                          rows["other"]["lib_d1_rd"], rows["other"]["lib_ll_rd"],
                          rows["other"]["lib_ll_wr"]),
                         ("300.0", "2.0", "0.05", "0.01", "0.0"))
        self.assertEqual(rows["glibc"]["lib_d1_rd"], "")
        self.assertIn("--cache-sim=yes --D1=32768,8,64 --I1=32768,8,64 --LL=1048576,16,64",
                      rows["glibc"]["command"])
        self.assertIn("| larson-classic T=1 | other | 2.000 | 0.500 | 0.100 | 0.030 | 0.050 | "
                      "0.010 | 0.000 |", res.stdout)
        self.assertIn("| larson-classic T=1 | glibc | 2.000 | 0.500 | 0.100 | 0.030 |  |  |  |",
                      res.stdout)

    def test_bad_values_are_errors(self):
        for args, message in [(["--reps", "0"], "--reps must be >= 1"),
                              (["--larson-seconds", "0"], "--larson-seconds must be > 0"),
                              (["--threads", "0"], "--threads wants thread counts >= 1"),
                              (["--ll", "1MiB"], "--ll wants SIZE,ASSOC,LINE"),
                              (["--allocators", "nosuch"], "unknown allocator nosuch")]:
            res = subprocess.run([sys.executable,
                                  os.path.join(HERE, "count_workload_instructions.py")] + args,
                                 capture_output=True, text=True)
            self.assertEqual(res.returncode, 2, args)
            self.assertIn(message, res.stderr, args)


if __name__ == "__main__":
    unittest.main()
