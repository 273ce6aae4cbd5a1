#!/usr/bin/env bash
# Builds MF2 variants for the head-to-head runner and prints one `--allocator NAME=PATH` argument
# per variant, to measure what a build option or a check costs (bench/RESULTS.md):
#   mf2-hardened      --config=hardened (free-list links encoded, MF2_HARDENED=1)
#   mf2-VARIANT       the committed tree with bench/variants/VARIANT.patch applied (a scratch
#                     worktree of HEAD; e.g. no_link_check: PopBatch follows links unchecked)
# Each library is copied to OUT (default /tmp/mf2-variants), so later builds do not replace it.
#
#   args=$(bash bench/build_variants.sh)
#   ./bazel run -c opt //bench:head_to_head -- $args
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
out=${OUT:-/tmp/mf2-variants}
mkdir -p "$out"
bazel=$root/bazel

"$bazel" build -c opt --config=hardened //mf2:libmf2_malloc.so >&2
cp -f "$("$bazel" info -c opt --config=hardened bazel-bin 2>/dev/null)/mf2/libmf2_malloc.so" \
  "$out/mf2-hardened.so"
args=("--allocator" "mf2-hardened=$out/mf2-hardened.so")

for patch in bench/variants/*.patch; do
  name=$(basename "$patch" .patch)
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/mf2-variant.XXXXXX")
  git worktree add --detach -q "$scratch/tree" HEAD
  (
    cd "$scratch/tree"
    git apply "$root/$patch"
    "$bazel" build -c opt //mf2:libmf2_malloc.so >&2
    cp -f "$("$bazel" info -c opt bazel-bin 2>/dev/null)/mf2/libmf2_malloc.so" "$out/mf2-$name.so"
    "$bazel" shutdown >/dev/null 2>&1 || true
  )
  git worktree remove --force "$scratch/tree"
  rm -rf "$scratch"
  args+=("--allocator" "mf2-${name//_/-}=$out/mf2-$name.so")
done
echo "${args[@]}"
