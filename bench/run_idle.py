#!/usr/bin/env python3
"""Idle-producer memory return: runs bench/idle_producer under each allocator, interleaved.

Usage (after `bazel build -c opt //bench:idle_producer //mf2:libmf2_malloc.so`):
  python3 bench/run_idle.py [--reps 5] [--scenarios at-once,spread,resume] [--out FILE]
      [--allocator NAME=/path/lib.so ...] [--only REGEX]

Scenarios (arguments of idle_producer: total_mib keep_percent rounds spread_ms resume_ms idle_s
scratch_percent):
  at-once  256 10 3 0 0 10    the consumer frees everything right after the hand-off, the producer
                              sleeps; then 2 s + 10 s idle (idle CPU measured over the 10 s)
  spread   256 10 2 5000 0 1  the consumer's frees are spread over 5 s, the producer stays idle
  resume   256 10 3 0 5 1     the producer allocates as much again 5 ms after the hand-off
  scratch  256 10 3 0 0 1 50  as at-once, and the producer frees scratch blocks of its own (half
                              as many as its messages) just before the hand-off, then sleeps

For each allocator and repetition it records the last round's resident set 100 ms after the
consumer's last free, the live bytes then, their ratio, the consumer's frees per second, the
resident set after the idle period, the CPU time used in the first 2 s of it (memory still being
returned) and per second afterwards, and (resume) the producer's allocations per second. Prints
medians as Markdown tables (and writes them to --out). MF2 variants differ only in environment
variables.
"""

import argparse
import os
import re
import statistics
import subprocess

LIBS = "/usr/lib/x86_64-linux-gnu/"
MF2_LIB = "bazel-out/k8-opt/bin/mf2/libmf2_malloc.so"
ALLOCATORS = [
    ("glibc", None, {}),
    ("mimalloc", LIBS + "libmimalloc.so.2", {}),
    ("jemalloc", LIBS + "libjemalloc.so.2", {}),
    ("tcmalloc", LIBS + "libtcmalloc_minimal.so.4", {}),
    ("mf2 (no reclamation)", MF2_LIB, {"MF2_RECLAIM_IDLE": "0"}),
    ("mf2 (freer sweeps, no reclaimer)", MF2_LIB, {"MF2_BACKGROUND_RECLAIM": "0"}),
    ("mf2 (default)", MF2_LIB, {}),
    ("mf2 (page cache 0)", MF2_LIB, {"MF2_PAGE_CACHE_MB": "0"}),
]
SCENARIOS = {
    "at-once": ("256 10 3 0 0 10", "the consumer frees everything at once, the producer sleeps"),
    "spread": ("256 10 2 5000 0 1", "the consumer's frees spread over 5 s, the producer idle"),
    "resume": ("256 10 3 0 5 1", "the producer allocates as much again 5 ms after the hand-off"),
    "scratch": ("256 10 3 0 0 1 50", "as at-once, the producer also freeing scratch blocks of its "
                "own just before the hand-off"),
}


def run(binary, args, lib, env_extra):
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("MF2_") or k == "LD_PRELOAD":
            del env[k]
    if lib:
        env["LD_PRELOAD"] = os.path.abspath(os.path.realpath(lib))
    env.update(env_extra)
    out = subprocess.run([binary] + args, env=env, capture_output=True, text=True, check=True)
    text = out.stdout
    last = [l for l in text.splitlines() if l.startswith("round=")][-1]
    fields = dict(kv.split("=") for kv in last.split())
    resume = re.search(r"producer_resume_allocs_per_s=([0-9.]+)", text)
    return {
        "live": float(fields["live_mib"]),
        "rss100": float(fields["rss100_mib"]),
        "ratio": float(fields["rss100_over_live"]),
        "rss_end": float(re.search(r"rss_idle_mib=\S+ \(at the start of the idle period\) \S+ "
                                   r"\(2 s later\) ([0-9.]+)", text).group(1)),
        "release_cpu_ms": float(re.search(r"idle_release_cpu_ms=([0-9.]+)", text).group(1)),
        "idle_cpu_ms": float(re.search(r"idle_cpu_ms=([0-9.]+)", text).group(1)),
        "frees": float(re.search(r"Throughput = ([0-9.]+)", text).group(1)),
        "resume_allocs": float(resume.group(1)) if resume else 0.0,
    }


def table(name, args, reps, allocators, results, what):
    lines = [
        "### %s: `idle_producer %s`" % (name, args),
        "",
        "%s; %d repetitions interleaved, medians (last round, RSS 100 ms after the consumer's last "
        "free)." % (what, reps),
        "",
        "| allocator | live MiB | RSS MiB | RSS / live | consumer frees/s | RSS after idle MiB "
        "| CPU ms, first 2 s idle | idle CPU ms/s |" + (" producer allocs/s |" if name == "resume"
                                                      else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|" if name == "resume" else ""),
    ]
    for alloc, _, _ in allocators:
        r = results[alloc]
        med = {k: statistics.median(x[k] for x in r) for k in r[0]}
        line = "| %s | %.1f | %.1f | %.2f | %.2f M | %.1f | %.1f | %.3f |" % (
            alloc, med["live"], med["rss100"], med["ratio"], med["frees"] / 1e6, med["rss_end"],
            med["release_cpu_ms"], med["idle_cpu_ms"])
        if name == "resume":
            line += " %.2f M |" % (med["resume_allocs"] / 1e6)
        lines.append(line)
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--bin", default="bazel-out/k8-opt/bin/bench/idle_producer")
    p.add_argument("--out")
    p.add_argument("--allocator", action="append", default=[], metavar="NAME=/path/lib.so",
                   help="another preload library (e.g. MF2 built at another commit); repeatable")
    p.add_argument("--only", help="regex: run only the allocators whose name matches")
    o = p.parse_args()
    allocators = [a for a in ALLOCATORS if a[1] is None or os.path.exists(a[1])]
    for spec in o.allocator:
        name, sep, path = spec.partition("=")
        if not sep or not os.path.exists(path):
            p.error("--allocator %r: expected NAME=/path/to/lib.so (an existing file)" % spec)
        allocators.append((name, path, {}))
    if o.only:
        allocators = [a for a in allocators if re.search(o.only, a[0])]
        if not allocators:
            p.error("--only %r matches no allocator" % o.only)
    texts = []
    for name in o.scenarios.split(","):
        args, what = SCENARIOS[name]
        results = {a[0]: [] for a in allocators}
        for rep in range(o.reps):
            # Rotate the order each repetition so no allocator always runs first.
            order = allocators[rep % len(allocators):] + allocators[:rep % len(allocators)]
            for alloc, lib, env in order:
                results[alloc].append(run(o.bin, args.split(), lib, env))
        text = table(name, args, o.reps, allocators, results, what)
        print(text + "\n", flush=True)
        texts.append(text)
    if o.out:
        with open(o.out, "w") as f:
            f.write("\n\n".join(texts) + "\n")


if __name__ == "__main__":
    main()
