#!/usr/bin/env python3
"""Tests of the head-to-head runner (run_h2h.py) that need no benchmark build: its allocator
arguments, its parsing and summaries, and a whole tiny run over fake benchmark programs."""

import argparse
import contextlib
import csv
import io
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run_h2h  # noqa: E402


def options(**kw):
    base = dict(allocators=None, allocator=None, mf2_lib=None, workspace="/nonexistent",
                baseline=None)
    base.update(kw)
    return argparse.Namespace(**base)


class TempDirTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        run_h2h.CUSTOM_MF2.clear()

    def tearDown(self):
        shutil.rmtree(self.dir)

    def write(self, name, data=b"", mode=0o644):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        return path


class AllocatorArguments(TempDirTest):
    def test_unknown_names_are_an_error_listing_the_valid_ones(self):
        lib = self.write("mine.so")
        with self.assertRaises(run_h2h.UsageError) as e:
            run_h2h.resolve_allocators(options(allocators="glibc,foo,mimalloc,bar",
                                               allocator=["mine=" + lib]))
        msg = str(e.exception)
        self.assertIn("unknown allocators foo, bar", msg)
        for valid in ["glibc", "mimalloc", "jemalloc", "tcmalloc", "mf2", "mf2-route_p", "mine"]:
            self.assertIn(valid, msg)
        self.assertIn("--allocator NAME=/path/lib.so", msg)

    def test_bad_custom_allocators_are_errors(self):
        lib = self.write("x.so")
        cases = {
            "noequals": "wants NAME=/path/to/lib.so",
            "=" + lib: "wants NAME=/path/to/lib.so",
            "mimalloc=" + lib: "is taken",
            "a b=" + lib: "letters, digits",
            "mine=" + lib + ".missing": "no such file",
        }
        for spec, expected in cases.items():
            with self.assertRaises(run_h2h.UsageError, msg=spec) as e:
                run_h2h.resolve_allocators(options(allocator=[spec]))
            self.assertIn(expected, str(e.exception), spec)
        with self.assertRaises(run_h2h.UsageError) as e:
            run_h2h.resolve_allocators(options(allocator=["x=" + lib, "x=" + lib]))
        self.assertIn("is taken", str(e.exception))

    def test_custom_allocators_run_by_default_and_after_a_list(self):
        a, b = self.write("a.so"), self.write("b.so")
        allocators, _ = run_h2h.resolve_allocators(
            options(allocators="glibc,b", allocator=["a=" + a, "b=" + b]))
        self.assertEqual(allocators, [("glibc", None), ("b", b), ("a", a)])
        allocators, _ = run_h2h.resolve_allocators(options(allocator=["a=" + a]))
        names = [n for n, _ in allocators]
        self.assertEqual(names[0], "glibc")
        self.assertEqual(names[-1], "a")
        self.assertNotIn("mf2-route_p", names, "variants run only when listed")

    def test_a_custom_mf2_build_gets_mf2_stats(self):
        mf2 = self.write("libmf2_old.so", b"\x7fELF...\0mf2_malloc\0mf2_free\0")
        other = self.write("libother.so", b"\x7fELF...\0malloc\0")
        run_h2h.resolve_allocators(options(allocator=["old=" + mf2, "other=" + other]))
        self.assertTrue(run_h2h.is_mf2("old"))
        self.assertFalse(run_h2h.is_mf2("other"))

    def test_baseline(self):
        self.assertEqual(run_h2h.pick_baseline(options(), ["glibc", "mimalloc"]), "mimalloc")
        self.assertEqual(run_h2h.pick_baseline(options(), ["glibc", "x"]), "glibc")
        self.assertEqual(run_h2h.pick_baseline(options(baseline="x"), ["glibc", "x"]), "x")
        with self.assertRaises(run_h2h.UsageError):
            run_h2h.pick_baseline(options(baseline="y"), ["glibc", "x"])

    def test_the_command_line_exits_with_the_error(self):
        res = subprocess.run([sys.executable, os.path.join(HERE, "run_h2h.py"), "--bin-dir",
                              self.dir, "--workspace", self.dir, "--allocators", "glibc,nope"],
                             capture_output=True, text=True)
        self.assertEqual(res.returncode, 2)
        self.assertIn("unknown allocator nope in --allocators; valid: glibc, mimalloc", res.stderr)


MF2_REPORT = """\
mf2_stats: MF2 0.3.0, pid 42 (larson), route route_s, reuse rate 0.9985
mf2_stats: memory                now         peak
mf2_stats:   in use          2.0 MiB          n/a  spans held by heaps 2.0 MiB + ...
mf2_stats: counter                                 value  description
mf2_stats:   slow_allocs                              32  allocations that entered the slow path
mf2_stats:   new_pages                                99  slow path forced to take a new page
mf2_stats: route=route_s reuse_rate=0.9985 new_pages=1461 page_reuses=5 adoptions=0 \
pages_reclaimed=0 segments_mapped=1 bytes_in_use=2097152 pid=42
"""


class Parsing(unittest.TestCase):
    def test_mf2_report(self):
        summary, reuse, new_pages = run_h2h.parse_mf2_stats("noise\n" + MF2_REPORT)
        self.assertTrue(summary.startswith("route=route_s reuse_rate=0.9985"))
        self.assertEqual(reuse, "0.9985")
        self.assertEqual(new_pages, "1461", "the key=value line wins over the counter line")
        self.assertEqual(run_h2h.parse_mf2_stats("no stats here\n"), (None, None, None))

    def test_others_fraction(self):
        # 2 CPUs for 1 s = 2 CPU-seconds; 1.5 busy, 0.5 of them ours: others used half.
        self.assertAlmostEqual(run_h2h.others_fraction((10.0, 100.0), (11.5, 102.0), 0.5), 0.5)
        self.assertEqual(run_h2h.others_fraction((10.0, 100.0), (11.0, 102.0), 1.2), 0.0)
        self.assertIsNone(run_h2h.others_fraction(None, (1.0, 2.0), 0.0))

    def test_summary_spread_rss_and_busy_runs(self):
        wl = run_h2h.Workload("w", 1, "prog", [], 1, "ops")
        rows = []
        for name, tps, rss, others in [("base", [100, 80, 120], [10240, 30720, 20480], [0, 0, 0]),
                                       ("x", [50, 60, 40], [5, 5, 5], [0.5, 0, 0])]:
            for tp, r, o in zip(tps, rss, others):
                rows.append({"workload": "w T=1", "allocator": name, "status": "ok",
                             "throughput": tp, "rss_kib": r, "others_cpu": o})
        rows.append({"workload": "w T=1", "allocator": "x", "status": "exit 1",
                     "throughput": None, "rss_kib": None, "others_cpu": 0})
        s = run_h2h.summarize(rows, [wl], ["base", "x"], "base")
        x = s[("w T=1", "x")]
        self.assertEqual((x["runs"], x["ok"], x["median"]), (4, 3, 50))
        self.assertEqual((x["ratio"], x["ratio_min"], x["ratio_max"]), (0.5, 0.4, 0.6))
        self.assertEqual(x["busy_runs"], 1)
        b = s[("w T=1", "base")]
        self.assertEqual((b["rss_median"], b["rss_min"], b["rss_max"]), (20480, 10240, 30720))
        table = run_h2h.markdown_tables(s, [wl], ["base", "x"], "base")
        self.assertIn("x ratio to base", table)
        self.assertIn("50 x0.50 ±20% (3/4 ok) (busy 1/4)", table)
        self.assertIn("| w T=1 | 20.0 (10.0-30.0) | 0.0 |", table)
        self.assertEqual(len(run_h2h.busy_warnings(rows)), 1)
        self.assertEqual(run_h2h.busy_warnings(rows[:3]), [])
        self.assertEqual(run_h2h.chart_warning(rows, 0.5),
                         "busy machine: 50% of the CPUs busy with other work before the run, "
                         "1 of 7 runs shared the CPUs (see results.md)")
        self.assertIsNone(run_h2h.chart_warning(rows[:3], 0.0))

    def test_mf2_counters_per_operation(self):
        raw = ("route=route_s reuse_rate=0.9 new_pages=7 page_reuses=5 adoptions=2 "
               "pages_reclaimed=3 slow_allocs=500 cache_refills=400 cache_flushes=100 pid=42")
        fields = run_h2h.key_values(raw)
        self.assertEqual(run_h2h.mf2_counters_per_op(fields, 1000.0, "10"),
                         {"slow_allocs": 0.05, "cache_refills": 0.04, "cache_flushes": 0.01})
        self.assertEqual(run_h2h.mf2_counters_per_op(fields, 1000.0, None), {}, "no elapsed time")
        self.assertEqual(run_h2h.mf2_counters_per_op(fields, 0.0, 1.0), {})
        self.assertEqual(run_h2h.mf2_counters_per_op(run_h2h.key_values("route=route_s pid=1"),
                                                     10.0, 1.0), {},
                         "an older MF2 without the counters in its key=value line")
        wl = run_h2h.Workload("w", 1, "prog", [], 1, "ops")
        rows = [{"workload": "w T=1", "allocator": "mf2", "status": "ok", "throughput": tp,
                 "elapsed_s": 10.0, "rss_kib": 1, "others_cpu": 0, "mf2_raw": raw + str(tp),
                 "mf2_reuse": "0.9", "mf2_new_pages": "7"} for tp in (900.0, 1000.0, 1200.0)]
        s = run_h2h.summarize(rows, [wl], ["mf2"], "mf2")
        table = run_h2h.markdown_tables(s, [wl], ["mf2"], "mf2")
        self.assertIn("| pages reclaimed | slow paths per 100 ops | cache refills per 100 ops "
                      "| cache flushes per 100 ops |", table)
        # The run nearest the median (1000 ops/s for 10 s): 500, 400 and 100 in 10,000 ops.
        self.assertIn("| w T=1 | mf2 | 0.9 | 7 | 2 | 3 | 5.000 | 4.000 | 1.000 |", table)


class RunResults(unittest.TestCase):
    """parse_run: a finished process's output and exit status as a RunResult."""

    OUT = "Throughput = 2500000 ops/s\npeak_rss_kib = 300\nelapsed_seconds = 1.5\n"

    def parse(self, stdout=OUT, stderr="", returncode=0, timed_out=False, time_rss=None,
              mf2=False):
        return run_h2h.parse_run(stdout, stderr, returncode, timed_out, 1.25, 0.1, time_rss, mf2)

    def test_ok_run(self):
        res = self.parse(time_rss=400)
        self.assertEqual(res.status, "ok")
        self.assertEqual((res.throughput, res.program_rss_kib, res.rss_kib, res.elapsed_s),
                         (2500000.0, 300, 400, 1.5))
        self.assertEqual((res.wall_s, res.others_cpu, res.exit), (1.25, 0.1, 0))
        self.assertIsNone(res.generations)
        self.assertEqual(self.parse().rss_kib, 300, "without GNU time, the program's own figure")

    def test_failures_by_kind(self):
        self.assertEqual(self.parse(returncode=3).status, "exit 3")
        self.assertEqual(self.parse(returncode=128 + 11).status, "signal 11")
        self.assertEqual(self.parse(returncode=137, timed_out=True).status, "timeout")
        self.assertEqual(self.parse(stdout="nothing\n").status, "no throughput line")

    def test_mf2_stats_are_read_for_mf2_runs_only(self):
        self.assertEqual(self.parse(stderr=MF2_REPORT, mf2=True).mf2_new_pages, "1461")
        self.assertIsNone(self.parse(stderr=MF2_REPORT).mf2_raw)

    def test_progress_line_and_csv_row(self):
        wl = run_h2h.Workload("larson", 2, "larson", [1, 8], 1, "ops")
        res = self.parse(stderr=MF2_REPORT, mf2=True)
        self.assertEqual(run_h2h.progress_line(3, 12, wl, "mf2-cda", 1, res),
                         "[3/12] larson T=2 mf2-cda rep 1 ... 2.50 Mops/s")
        res.others_cpu = 0.5
        self.assertTrue(run_h2h.progress_line(3, 12, wl, "x", 1, res).endswith(
            " (busy: others used 50% of the CPUs)"))
        failed = self.parse(stderr="first\nboom\n", returncode=1)
        self.assertEqual(run_h2h.progress_line(4, 12, wl, "x", 2, failed),
                         "[4/12] larson T=2 x rep 2 ... FAILED (exit 1): boom")
        row = run_h2h.csv_row(1, wl, "mf2-cda", "/lib/m.so", ["/bin/larson", "1", "8"], res)
        self.assertEqual(set(row), set(run_h2h.RUNS_CSV_FIELDS))
        self.assertEqual(row["command"], "MF2_RECLAIM_IDLE=1 MF2_ROUTE=cda "
                                         "LD_PRELOAD=/lib/m.so larson 1 8")
        self.assertEqual((row["wall_s"], row["others_cpu"], row["mf2_new_pages"]),
                         ("1.250", "0.500", "1461"))


class Planning(TempDirTest):
    """plan(): the checked options, the allocators and workloads, the size of the run."""

    def parse(self, *args):
        parser = run_h2h.build_parser()
        return parser, parser.parse_args(["--bin-dir", self.dir, "--workspace", self.dir] +
                                         list(args))

    def test_paired_base_must_be_in_the_run(self):
        self.write("larson", b"#!/bin/sh\n", 0o755)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), self.assertRaises(SystemExit) as exit_:
            run_h2h.plan(*self.parse("--only", "larson-classic T=1", "--allocators", "glibc",
                                     "--paired-base", "mf2-old"))
        self.assertEqual(exit_.exception.code, 2)
        self.assertIn("--paired-base mf2-old is not in the run (glibc)", err.getvalue())

    def test_plan(self):
        for program in ["larson", "cache_scratch"]:
            self.write(program, b"#!/bin/sh\n", 0o755)
        lib = self.write("a.so")
        p = run_h2h.plan(*self.parse("--quick", "--only", "larson-classic|cache",
                                     "--allocators", "glibc", "--allocator", "a=" + lib))
        self.assertEqual(p.names, ["glibc", "a"])
        self.assertEqual((p.reps, p.baseline), (3, "glibc"))
        self.assertEqual([wl.label for wl in p.workloads],
                         ["larson-classic T=1", "larson-classic T=2", "cache-scratch T=2"])
        self.assertEqual(p.total_runs, 3 * 3 * 2)
        self.assertAlmostEqual(p.estimate_s, 3 * 2 * (1.25 + 1.25 + 0.95))

    def test_zero_or_negative_reps_are_an_error(self):
        # --reps 0 used to run the default 5 repetitions: a bad value silently reinterpreted.
        for reps in ["0", "-1"]:
            with self.assertRaises(SystemExit, msg=reps) as e:
                with contextlib.redirect_stderr(io.StringIO()) as err:
                    run_h2h.plan(*self.parse("--reps", reps, "--allocators", "glibc"))
            self.assertEqual(e.exception.code, 2, reps)
            self.assertIn("--reps must be >= 1", err.getvalue())

    def test_a_missing_program_stops_the_plan(self):
        with self.assertRaises(SystemExit) as e:
            run_h2h.plan(*self.parse("--allocators", "glibc"))
        self.assertIn("benchmark program missing: " + os.path.join(self.dir, "larson"),
                      str(e.exception.code))


# Runs for 0.1 s: the kernel's CPU accounting (/proc/stat, in clock ticks of 10 ms) must see
# time pass for the runner to measure the other processes' share of the CPUs during the run.
FAKE_PROGRAM = """#!/bin/sh
sleep 0.1
if [ -n "$FAKE_PRELOAD_LOG" ]; then
  echo "$LD_PRELOAD $(cksum < "${LD_PRELOAD:-/dev/null}")" >> "$FAKE_PRELOAD_LOG"
fi
echo "Throughput = 1234567 operations per second"
echo "peak_rss_kib = 2048"
"""


class FakeProgramsTest(TempDirTest):
    def fake_programs(self):
        """A bin/ folder in which every benchmark program the runner runs is FAKE_PROGRAM."""
        bin_dir = os.path.join(self.dir, "bin")
        os.mkdir(bin_dir)
        for program in ["larson", "xmalloc_test", "cache_scratch", "thread_churn",
                        "producer_consumer"]:
            with open(os.path.join(bin_dir, program), "w") as f:
                f.write(FAKE_PROGRAM)
            os.chmod(os.path.join(bin_dir, program), 0o755)
        return bin_dir


class TinyRun(FakeProgramsTest):
    """A whole run over fake benchmark programs, with a custom allocator: the files it writes."""

    def test_run(self):
        bin_dir = self.fake_programs()
        # Not a real library: the dynamic loader says so on stderr and runs the program anyway.
        lib = self.write("fake.so", b"not an ELF file")
        out = os.path.join(self.dir, "out")
        preload_log = os.path.join(self.dir, "preloads")
        res = subprocess.run(
            [sys.executable, os.path.join(HERE, "run_h2h.py"), "--bin-dir", bin_dir,
             "--workspace", self.dir, "--quick", "--reps", "2", "--only", "larson-classic T=1",
             "--allocators", "glibc", "--allocator", "fake=" + lib, "--out", out,
             "--paired-base", "glibc"],
            capture_output=True, text=True, env=dict(os.environ, FAKE_PRELOAD_LOG=preload_log))
        self.assertEqual(res.returncode, 0, res.stderr)
        # Each repetition preloaded its own copy of the library (same bytes, another file), and
        # the copies are gone after the run; glibc runs preload nothing.
        with open(preload_log) as f:
            seen = [line.split(" ", 1) for line in f.read().splitlines()]
        copies = [path for path, _ in seen if path]
        self.assertEqual(len(seen), 4, seen)
        self.assertEqual(len(copies), 2, seen)
        self.assertEqual(len(set(copies)), 2, "a new copy per repetition")
        with open(lib, "rb") as f:
            want = subprocess.run(["cksum"], stdin=f, capture_output=True, text=True).stdout
        for path, sum_ in seen:
            if path:
                self.assertNotEqual(path, lib)
                self.assertTrue(path.startswith(out + os.sep), path)
                self.assertEqual(sum_.strip(), want.strip(), "a byte-identical copy")
                self.assertFalse(os.path.exists(path), "removed after the run")
        with open(os.path.join(out, "runs.csv")) as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(sorted((r["allocator"], r["rep"], r["status"]) for r in rows),
                         [("fake", "1", "ok"), ("fake", "2", "ok"),
                          ("glibc", "1", "ok"), ("glibc", "2", "ok")])
        for r in rows:
            self.assertEqual(r["peak_rss_kib"] != "", True)
            self.assertNotEqual(r["others_cpu"], "", "every run measures the machine's load")
        fake_rows = [r for r in rows if r["allocator"] == "fake"]
        self.assertIn("LD_PRELOAD=" + lib, fake_rows[0]["command"])
        with open(os.path.join(out, "results.md")) as f:
            md = f.read()
        self.assertIn("- fake (--allocator): LD_PRELOAD=" + lib, md)
        self.assertIn("libraries preloaded from a fresh copy per repetition", md)
        self.assertIn("| larson-classic T=1 | ops | 1.23M x1.00 ±0%", md)
        self.assertIn("ratio to glibc", md, "mimalloc is not in the run: glibc is the baseline")
        self.assertIn("### Paired throughput ratios to glibc", md)
        self.assertIn("| workload | fake / glibc |", md)
        self.assertIn("| larson-classic T=1 | 1.00 (1.00-1.00) n=2 |", md)
        with open(os.path.join(out, "summary.csv")) as f:
            summary = list(csv.DictReader(f))
        self.assertEqual([s["ratio_to_baseline"] for s in summary], ["1.0", "1.0"])
        if shutil.which("gnuplot"):
            self.assertTrue(os.path.getsize(os.path.join(out, "chart.png")) > 0, md)
            with open(os.path.join(out, "chart.gp")) as f:
                gp = f.read()
            self.assertIn("set style histogram errorbars", gp)
            self.assertIn("Peak RSS", gp)
            self.assertIn("title 'fake'", gp)


class MachineState(FakeProgramsTest):
    """The cross-CPU round trip probed before each run (core_latency)."""

    def test_latency_split(self):
        # Two clusters: the split is the geometric middle of the widest gap.
        split = run_h2h.latency_split([55, 330, 52, 60, 325, None])
        self.assertAlmostEqual(split, (60 * 325) ** 0.5)
        # One cluster, or gaps below MODE_GAP: no split.
        self.assertIsNone(run_h2h.latency_split([50, 60, 99]))
        self.assertIsNone(run_h2h.latency_split([]))
        self.assertIsNone(run_h2h.latency_split([55]))

    def test_latency_table(self):
        wl = run_h2h.Workload("pc", 2, "producer_consumer", [], 1, "frees")
        rows = [dict(workload="pc T=2", allocator=a, throughput=t, roundtrip_ns=ns)
                for a, t, ns in [("x", 30e6, 55), ("x", 6e6, 330), ("x", 7e6, 340),
                                 ("y", 20e6, 60), ("y", 5e6, 320)]]
        md = run_h2h.latency_table(rows, [wl], ["x", "y"])
        self.assertIn("Two states of the machine: near (round trip below 139 ns, 2 runs) and "
                      "far (3 runs)", md)
        self.assertIn("| pc T=2 | near | 30.00M (1) | 20.00M (1) |", md)
        self.assertIn("| pc T=2 | far | 6.50M (2) | 5.00M (1) |", md)
        one = run_h2h.latency_table(rows[:1] + rows[3:4], [wl], ["x", "y"])
        self.assertIn("One state of the machine throughout", one)
        self.assertEqual(run_h2h.latency_table([dict(rows[0], roundtrip_ns=None)], [wl], ["x"]),
                         "")

    def test_probe(self):
        self.assertIsNone(run_h2h.probe_roundtrip(self.dir), "no program: no probe")
        self.write("core_latency", b"#!/bin/sh\necho roundtrip_ns = 57\n", 0o755)
        self.assertEqual(run_h2h.probe_roundtrip(self.dir), 57.0)
        self.write("core_latency", b"#!/bin/sh\necho roundtrip_ns = none\n", 0o755)
        self.assertIsNone(run_h2h.probe_roundtrip(self.dir), "one CPU: nothing to compare")
        self.write("core_latency", b"#!/bin/sh\necho roundtrip_ns = 57\nexit 1\n", 0o755)
        self.assertIsNone(run_h2h.probe_roundtrip(self.dir), "a failed probe is no probe")

    def test_a_run_probes_before_each_run(self):
        bin_dir = self.fake_programs()
        probe_log = os.path.join(self.dir, "probes")
        with open(os.path.join(bin_dir, "core_latency"), "w") as f:
            f.write("#!/bin/sh\necho x >> %s\necho roundtrip_ns = 61\n" % probe_log)
        os.chmod(os.path.join(bin_dir, "core_latency"), 0o755)
        out = os.path.join(self.dir, "out")
        res = subprocess.run(
            [sys.executable, os.path.join(HERE, "run_h2h.py"), "--bin-dir", bin_dir,
             "--workspace", self.dir, "--quick", "--reps", "1", "--only", "larson-classic",
             "--allocators", "glibc", "--out", out],
            capture_output=True, text=True)
        self.assertEqual(res.returncode, 0, res.stderr)
        with open(os.path.join(out, "runs.csv")) as f:
            rows = {r["workload"]: r for r in csv.DictReader(f)}
        self.assertEqual(rows["larson-classic T=1"]["roundtrip_ns"], "61")
        self.assertEqual(rows["larson-classic T=2"]["roundtrip_ns"], "61")
        with open(probe_log) as f:
            self.assertEqual(len(f.read().split()), 2, "one probe per run")
        with open(os.path.join(out, "results.md")) as f:
            md = f.read()
        self.assertIn("Round trip over 2 runs: median 61 ns (61-61).", md)
        self.assertIn("One state of the machine throughout", md)


if __name__ == "__main__":
    unittest.main()
