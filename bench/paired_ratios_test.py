#!/usr/bin/env python3
"""Tests of bench/paired_ratios.py over hand-written runs.csv files (no benchmark needed)."""

import contextlib
import io
import os
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import paired_ratios  # noqa: E402

HEADER = "rep,workload,threads,allocator,status,throughput\n"


class PairedRatiosTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))

    def tearDown(self):
        shutil.rmtree(self.dir)

    def run_tool(self, rows, *args):
        with open(os.path.join(self.dir, "runs.csv"), "w") as f:
            f.write(HEADER + "".join(rows))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = paired_ratios.main([self.dir] + list(args))
        return code, out.getvalue(), err.getvalue()

    def table(self, rows, *args):
        """The tool's table for `rows`; the run must succeed."""
        code, out, err = self.run_tool(rows, *args)
        self.assertEqual(code, 0, err)
        return out

    def test_ratios_pair_runs_of_the_same_repetition(self):
        # The new build is 10% faster than the old one in every repetition, while the machine
        # doubles its speed from one repetition to the next: unpaired medians would say 1.05.
        rows = ["1,larson T=1,1,old,ok,100\n", "1,larson T=1,1,new,ok,110\n",
                "2,larson T=1,1,old,ok,200\n", "2,larson T=1,1,new,ok,220\n",
                "3,larson T=1,1,old,ok,400\n", "3,larson T=1,1,new,ok,440\n"]
        out = self.table(rows, "--base", "old")
        self.assertIn("| larson T=1 | 1.10 (1.10-1.10) n=3 |", out)
        self.assertIn("new / old", out)

    def test_median_and_range(self):
        rows = []
        for rep, (a, b) in enumerate([(100, 90), (100, 120), (100, 100)], start=1):
            rows += ["%d,w,1,a,ok,%d\n" % (rep, a), "%d,w,1,b,ok,%d\n" % (rep, b)]
        out = self.table(rows, "--base", "a", "b")
        self.assertIn("| w | 1.00 (0.90-1.20) n=3 |", out)

    def test_a_failed_run_gives_no_ratio(self):
        rows = ["1,w,1,a,ok,100\n", "1,w,1,b,failed,\n",
                "2,w,1,a,ok,100\n", "2,w,1,b,ok,150\n",
                "1,v,1,a,ok,100\n", "1,v,1,b,timeout,\n"]
        out = self.table(rows, "--base", "a")
        self.assertIn("| w | 1.50 (1.50-1.50) n=1 |", out)
        self.assertIn("| v | n/a |", out)

    def test_only_selects_workloads(self):
        rows = ["1,larson T=1,1,a,ok,1\n", "1,larson T=1,1,b,ok,2\n",
                "1,xmalloc T=1,1,a,ok,1\n", "1,xmalloc T=1,1,b,ok,3\n"]
        out = self.table(rows, "--base", "a", "--only", "^xmalloc")
        self.assertIn("xmalloc T=1", out)
        self.assertNotIn("larson", out)

    def test_unknown_allocator_is_an_error_naming_the_valid_ones(self):
        code, _, err = self.run_tool(["1,w,1,a,ok,1\n", "1,w,1,b,ok,2\n"], "--base", "c")
        self.assertEqual(code, 2)
        self.assertIn("c not in this run", err)
        self.assertIn("a, b", err)

    def test_missing_runs_csv_is_an_error(self):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = paired_ratios.main([os.path.join(self.dir, "nothing"), "--base", "a"])
        self.assertEqual(code, 2)
        self.assertIn("no runs.csv", err.getvalue())


if __name__ == "__main__":
    unittest.main()
