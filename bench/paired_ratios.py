#!/usr/bin/env python3
"""Paired throughput ratios of a head-to-head run: how much faster or slower one build is than
another, measured the way this noisy 2-core machine allows.

    python3 bench/paired_ratios.py DIR --base NAME [--only REGEX] [NAME ...]

DIR is the output of bench/run_h2h.py (its runs.csv). For every workload and every allocator
NAME (default: every allocator of the run but the base), each repetition's throughput is
divided by the base's throughput in the same repetition; the table gives the median of those
ratios and their range, `1.02 (0.97-1.08) n=5`. run_h2h.py runs every allocator of a
repetition one after the other, so a slow phase of the machine falls on both sides of most
pairs: the ratio of one repetition moves less than either throughput does, and its median over
the repetitions is the figure bench/RESULTS.md quotes as "paired ratios". A repetition in which
either run failed gives no ratio; a workload with none for an allocator shows `n/a`.

Python 3 standard library only.
"""

import argparse
import collections
import csv
import os
import re
import statistics
import sys


def read_runs(path):
    """{(workload, rep): {allocator: throughput}} of the successful runs, and the workloads and
    allocators in the order runs.csv first names them."""
    by_rep = collections.defaultdict(dict)
    workloads, allocators = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["workload"] not in workloads:
                workloads.append(row["workload"])
            if row["allocator"] not in allocators:
                allocators.append(row["allocator"])
            if row["status"] != "ok" or not row["throughput"]:
                continue
            by_rep[(row["workload"], row["rep"])][row["allocator"]] = float(row["throughput"])
    return by_rep, workloads, allocators


def ratios(by_rep, workload, allocator, base):
    """The per-repetition ratios allocator / base of one workload, in repetition order."""
    out = []
    for (w, rep), runs in sorted(by_rep.items(), key=lambda item: int(item[0][1])):
        if w == workload and allocator in runs and runs.get(base, 0) > 0:
            out.append(runs[allocator] / runs[base])
    return out


def cell(values):
    if not values:
        return "n/a"
    return "%.2f (%.2f-%.2f) n=%d" % (statistics.median(values), min(values), max(values),
                                     len(values))


def table(by_rep, workloads, names, base):
    lines = ["| workload | " + " | ".join("%s / %s" % (n, base) for n in names) + " |",
             "| --- |" + " --- |" * len(names)]
    for w in workloads:
        lines.append("| %s | %s |" % (w, " | ".join(cell(ratios(by_rep, w, n, base))
                                                    for n in names)))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Paired throughput ratios (median and range over repetitions) of a "
                    "bench/run_h2h.py run.")
    parser.add_argument("dir", help="the run's output directory (holds runs.csv)")
    parser.add_argument("--base", required=True, help="the allocator every ratio divides by")
    parser.add_argument("--only", help="only workloads whose label matches this regex")
    parser.add_argument("names", nargs="*", help="allocators to compare (default: all but --base)")
    opts = parser.parse_intermixed_args(argv)
    path = os.path.join(opts.dir, "runs.csv")
    if not os.path.isfile(path):
        print("paired_ratios: no runs.csv in %s (the output directory of bench/run_h2h.py)"
              % opts.dir, file=sys.stderr)
        return 2
    by_rep, workloads, allocators = read_runs(path)
    unknown = [n for n in [opts.base] + opts.names if n not in allocators]
    if unknown:
        print("paired_ratios: %s not in this run; its allocators: %s"
              % (", ".join(unknown), ", ".join(allocators)), file=sys.stderr)
        return 2
    names = opts.names or [a for a in allocators if a != opts.base]
    if opts.only:
        workloads = [w for w in workloads if re.search(opts.only, w)]
    print(table(by_rep, workloads, names, opts.base))
    return 0


if __name__ == "__main__":
    sys.exit(main())
