#!/usr/bin/env bash
# Runs the Google Benchmark microbenchmarks: alloc_benchmark under glibc, mimalloc, jemalloc,
# tcmalloc and MF2 (LD_PRELOAD, same binary), and mf2_benchmark (MF2's own paths). Reports the
# median of 5 repetitions per benchmark as a Markdown table (ns per item; lower is better).
#
#   bash bench/run_micro.sh            # after: bazel build -c opt //bench:all //mf2:libmf2_malloc.so
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=bazel-out/k8-opt/bin
libdir=/usr/lib/x86_64-linux-gnu
declare -A libs=(
  [glibc]=""
  [mimalloc]="$libdir/libmimalloc.so.2"
  [jemalloc]="$libdir/libjemalloc.so.2"
  [tcmalloc]="$libdir/libtcmalloc_minimal.so.4"
  [mf2]="$PWD/$bin/mf2/libmf2_malloc.so"
)
order=(glibc mimalloc jemalloc tcmalloc mf2)
out=$(mktemp -d)
for a in "${order[@]}"; do
  echo "[run_micro] alloc_benchmark on $a" >&2
  LD_PRELOAD="${libs[$a]}" "$bin/bench/alloc_benchmark" --benchmark_repetitions=5 \
    --benchmark_report_aggregates_only=true --benchmark_format=csv 2>/dev/null |
    grep '_median' >"$out/$a.csv"
done
echo "| benchmark (ns per item, median of 5) | glibc | mimalloc | jemalloc | tcmalloc | mf2 |"
echo "|---|---|---|---|---|---|"
cut -d, -f1 "$out/glibc.csv" | while read -r name; do
  row="| ${name//\"/}"
  for a in "${order[@]}"; do
    # items_per_second is column 7 of Google Benchmark's CSV; ns per item = 1e9 / it.
    ips=$(grep -F "$name," "$out/$a.csv" | cut -d, -f7)
    if [ -n "$ips" ]; then row="$row | $(awk -v v="$ips" 'BEGIN { printf "%.1f", 1e9 / v }')"; else row="$row | n/a"; fi
  done
  echo "${row/_median/} |"
done
echo
echo "MF2 internal paths (mf2_benchmark, median of 5):"
"$bin/bench/mf2_benchmark" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true 2>/dev/null |
  grep -E "median|Benchmark"
