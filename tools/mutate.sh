#!/usr/bin/env bash
# The C++ mutation check (VERIFICATION.md, "Mutation check (C++)"): each tools/mutants/NAME.patch
# puts back one hazard or fixed bug; this script applies it to a scratch copy of the committed
# tree, runs the tests its header names, and prints a table: mutant -> caught by / time.
#
# usage: tools/mutate.sh [--configs "default tsan"] [--keep] [PATCH...]
#   PATCH     tools/mutants/*.patch when none is given (a name without folder or .patch works)
#   --configs the configurations to test each mutant under (default: "default tsan"; a name other
#             than default is passed as --config=NAME)
#   --keep    keep the scratch worktree and its Bazel server afterwards (to inspect a mutant)
#
# A patch starts with a header (every line before its first "diff --git"), `#` lines:
#   # Mutant: what it re-introduces (the hazard, the R-series item, the bug)
#   # Tests: Bazel labels expected to catch it (one or more lines)
#   # Runs: N      optional: --runs_per_test (for tests that catch by timing)
#   # Configs: ... optional: configurations for this patch (else --configs)
# Each mutant: `git worktree add` of HEAD under $TMPDIR (once), then per patch `git apply` on a
# clean tree, `bazel test --nocache_test_results` of its tests per configuration, and the tree
# reset. A patch that no longer applies is STALE; one whose build fails is BROKEN; one no test
# fails on SURVIVED. Each of those is a failure: the exit status is non-zero if any occurred.
# Logs stay in the folder printed first. Not part of tools/test.sh's default stages (it takes
# long: every mutant rebuilds the allocator); `tools/test.sh mutants` runs it.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD

configs="default tsan"
keep=0
patches=()
while [ $# -gt 0 ]; do
  case "$1" in
    --configs) configs=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "mutate.sh: unknown option $1" >&2; exit 2 ;;
    *)
      p=$1
      [ -f "$p" ] || p=tools/mutants/${1%.patch}.patch
      [ -f "$p" ] || { echo "mutate.sh: no patch $1" >&2; exit 2; }
      patches+=("$p")
      shift
      ;;
  esac
done
if [ ${#patches[@]} -eq 0 ]; then
  for p in tools/mutants/*.patch; do patches+=("$p"); done
fi
[ ${#patches[@]} -gt 0 ] || { echo "mutate.sh: no patches in tools/mutants" >&2; exit 2; }

tmp=${TMPDIR:-/tmp}
logs=$(mktemp -d "$tmp/mf2-mutants.XXXXXX")
scratch="$logs/tree"
commit=$(git rev-parse --short HEAD)
echo "[mutate] ${#patches[@]} mutants of $commit, configs: $configs; logs in $logs" >&2
git worktree add --detach -q "$scratch" HEAD || exit 1
cleanup() {
  if [ "$keep" = 0 ]; then
    (cd "$scratch" && bazel shutdown) >/dev/null 2>&1
    git -C "$ROOT" worktree remove --force "$scratch" >/dev/null 2>&1
  fi
}
trap cleanup EXIT

header_field() {  # header_field PATCH FIELD -> the values of every "# FIELD:" header line
  awk -v f="$2" '/^diff --git/ {exit} $0 ~ "^# " f ":" {sub("^# " f ":[ ]*", ""); print}' "$1" |
    tr '\n' ' '
}

rows=()
bad=0
for patch in "${patches[@]}"; do
  name=$(basename "$patch" .patch)
  tests=$(header_field "$patch" Tests)
  runs=$(header_field "$patch" Runs | tr -d ' ')
  pconfigs=$(header_field "$patch" Configs)
  [ -n "$pconfigs" ] || pconfigs=$configs
  start=$SECONDS
  git -C "$scratch" checkout -q -- . && git -C "$scratch" clean -qfd -e 'bazel-*'
  if [ -z "$tests" ]; then
    rows+=("$name|NO TESTS in its header|-|0")
    bad=1
    continue
  fi
  if ! git -C "$scratch" apply --check "$ROOT/$patch" 2>"$logs/$name.apply"; then
    rows+=("$name|STALE (does not apply: $logs/$name.apply)|-|0")
    bad=1
    continue
  fi
  git -C "$scratch" apply "$ROOT/$patch"
  verdicts=()
  caught=0
  broken=0
  for cfg in $pconfigs; do
    flags=(--nocache_test_results --test_summary=short --test_output=summary)
    [ "$cfg" = default ] || flags+=("--config=$cfg")
    [ -n "$runs" ] && flags+=("--runs_per_test=$runs")
    log="$logs/$name.$cfg.log"
    echo "[mutate] $name ($cfg): bazel test ${flags[*]} $tests" >&2
    # shellcheck disable=SC2086
    (cd "$scratch" && bazel test "${flags[@]}" $tests) >"$log" 2>&1
    # "FAILED in" / "TIMEOUT in": a test that ran and failed. Not "FAILED TO BUILD": a mutant
    # that does not compile is broken, not caught.
    failed=$(grep -Eo '^//[^ ]+ +(FAILED|TIMEOUT) in ' "$log" | awk '{print $1}' | sed 's#^//##' |
      tr '\n' ' ')
    if [ -n "$failed" ]; then
      verdicts+=("$cfg: ${failed% }")
      caught=1
    elif grep -qE 'FAILED: Build did NOT complete|ERROR: .*(Compiling|Linking)|build failed' "$log"; then
      verdicts+=("$cfg: BUILD FAILED ($log)")
      broken=1
    else
      verdicts+=("$cfg: not caught")
    fi
  done
  took=$((SECONDS - start))
  verdict=$(IFS=';'; echo "${verdicts[*]}")
  if [ "$broken" = 1 ] && [ "$caught" = 0 ]; then
    rows+=("$name|BROKEN|$verdict|$took")
    bad=1
  elif [ "$caught" = 1 ]; then
    rows+=("$name|caught|$verdict|$took")
  else
    rows+=("$name|SURVIVED|$verdict|$took")
    bad=1
  fi
  echo "[mutate] $name: ${rows[-1]}" >&2
done
git -C "$scratch" checkout -q -- .

echo
echo "Mutation check of $commit ($(date -u +%Y-%m-%d)), configs: $configs"
echo
echo "| mutant | result | failing tests per configuration | time (s) |"
echo "| --- | --- | --- | --- |"
for r in "${rows[@]}"; do
  IFS='|' read -r n res v t <<<"$r"
  echo "| $n | $res | ${v//;/; } | $t |"
done
survivors=$(printf '%s\n' "${rows[@]}" | grep -cvE '\|caught\|' || true)
echo
echo "${#rows[@]} mutants, $survivors not caught (survived, stale, broken or without tests)"
[ "$bad" = 0 ]
