#!/usr/bin/env bash
# Instructions per malloc/free pair, counted with callgrind (deterministic; works without
# hardware counters). For each allocator and pattern, runs bench/pair_loop twice (N1 and N2
# pairs) and prints (Ir(N2) - Ir(N1)) / (N2 - N1): start-up, library loading and exit cancel out.
#
#   bazel build -c opt //bench:pair_loop //mf2:libmf2_malloc.so
#   bash bench/count_instructions.sh [allocator ...]     (default: mf2 glibc mimalloc tcmalloc jemalloc)
#
# Allocators: mf2 (bazel-out/k8-opt/bin/mf2/libmf2_malloc.so: the -c opt build, whatever bazel-bin
# points at after other builds), glibc (no preload), mimalloc, tcmalloc
# (gperftools' tcmalloc_minimal), jemalloc, or NAME=/path/to/lib.so.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }
loop=bazel-out/k8-opt/bin/bench/pair_loop
[ -x "$loop" ] || { echo "build first: bazel build -c opt //bench:pair_loop //mf2:libmf2_malloc.so" >&2; exit 1; }
libdir=/usr/lib/x86_64-linux-gnu
N1=${N1:-20000}
N2=${N2:-120000}

lib_of() {
  case "$1" in
    mf2) echo "$PWD/bazel-out/k8-opt/bin/mf2/libmf2_malloc.so" ;;
    glibc) echo "" ;;
    mimalloc) echo "$libdir/libmimalloc.so.2" ;;
    tcmalloc) echo "$libdir/libtcmalloc_minimal.so.4" ;;
    jemalloc) echo "$libdir/libjemalloc.so.2" ;;
    *=*) echo "${1#*=}" ;;
    *) echo "unknown allocator $1" >&2; exit 2 ;;
  esac
}

# Total instructions of one run.
count() {
  local lib=$1
  shift
  local out
  out=$(mktemp)
  env ${lib:+LD_PRELOAD=$lib} valgrind --tool=callgrind --callgrind-out-file="$out" "$loop" "$@" \
    2>&1 | grep -Eo 'Collected : [0-9]+' | grep -Eo '[0-9]+'
  rm -f "$out"
}

# Valgrind 3.19 cannot read clang-14's DWARF 5: measure a copy without debug information.
tmpdir=$(mktemp -d)
trap 'rm -rf "$tmpdir"' EXIT
stripped() {
  [ -n "$1" ] || return 0
  local copy
  copy="$tmpdir/$(basename "$1")"
  [ -f "$copy" ] || objcopy --strip-debug "$1" "$copy"
  echo "$copy"
}
cp "$loop" "$tmpdir/pair_loop" && objcopy --strip-debug "$tmpdir/pair_loop"
loop="$tmpdir/pair_loop"

allocators=("$@")
[ ${#allocators[@]} -gt 0 ] || allocators=(mf2 glibc mimalloc tcmalloc jemalloc)
patterns=("same 32" "same 512" "new" "mixed" "mid")
printf '%-10s' "allocator"
for p in "${patterns[@]}"; do printf '%12s' "${p// /:}"; done
echo "   (instructions per malloc+free pair)"
for a in "${allocators[@]}"; do
  lib=$(stripped "$(lib_of "$a")")
  printf '%-10s' "${a%%=*}"
  for p in "${patterns[@]}"; do
    read -r -a args <<<"$p"
    c1=$(count "$lib" "${args[@]}" "$N1")
    c2=$(count "$lib" "${args[@]}" "$N2")
    printf '%12.1f' "$(echo "($c2 - $c1) / ($N2 - $N1)" | bc -l)"
  done
  echo
done
