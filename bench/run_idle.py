#!/usr/bin/env python3
"""Idle-producer memory return: runs bench/idle_producer under each allocator, interleaved.

Usage (after `bazel build -c opt //bench:idle_producer //mf2:libmf2_malloc.so`):
  python3 bench/run_idle.py [--reps 5] [--args "256 10 3"] [--out FILE]

For each allocator and repetition it records the last round's resident set 100 ms after the
consumer's last free, the live bytes at that moment, their ratio, the CPU time the process used
while idle for 1 s afterwards, and the consumer's frees per second. Prints medians as a Markdown
table (and writes it to --out). MF2 variants differ only in environment variables.
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
    ("mf2 (default)", MF2_LIB, {}),
    ("mf2 (page cache 0)", MF2_LIB, {"MF2_PAGE_CACHE_MB": "0"}),
]


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
    return {
        "live": float(fields["live_mib"]),
        "rss100": float(fields["rss100_mib"]),
        "ratio": float(fields["rss100_over_live"]),
        "idle_cpu_ms": float(re.search(r"idle_cpu_ms=([0-9.]+)", text).group(1)),
        "frees": float(re.search(r"Throughput = ([0-9.]+)", text).group(1)),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--args", default="256 10 3")
    p.add_argument("--bin", default="bazel-out/k8-opt/bin/bench/idle_producer")
    p.add_argument("--out")
    o = p.parse_args()
    args = o.args.split()
    allocators = [a for a in ALLOCATORS if a[1] is None or os.path.exists(a[1])]
    results = {a[0]: [] for a in allocators}
    for rep in range(o.reps):
        for name, lib, env in allocators:
            results[name].append(run(o.bin, args, lib, env))
    lines = [
        "idle_producer %s, %d repetitions interleaved, medians (last round, 100 ms after the "
        "consumer's last free)" % (" ".join(args), o.reps),
        "",
        "| allocator | live MiB | RSS MiB | RSS / live | idle CPU ms (1 s) | consumer frees/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, _, _ in allocators:
        r = results[name]
        med = {k: statistics.median(x[k] for x in r) for k in r[0]}
        lines.append("| %s | %.1f | %.1f | %.2f | %.1f | %.2f M |" % (
            name, med["live"], med["rss100"], med["ratio"], med["idle_cpu_ms"],
            med["frees"] / 1e6))
    text = "\n".join(lines)
    print(text)
    if o.out:
        with open(o.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
