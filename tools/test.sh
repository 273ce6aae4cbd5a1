#!/usr/bin/env bash
# The whole MF2 test suite, as CI runs it (.ci/run calls this):
#   every test under the default config, ASan, TSan, UBSan and the debug-invariants config
#   (this includes every fuzz corpus replay, every stress test and the spin models);
#   every fuzz target built with --config=fuzz and run for a short smoke period beyond its corpus.
# Prints one summary line per stage and a final "N passed, M failed" line; exits non-zero if
# anything failed.
#
#   tools/test.sh                 # everything
#   MF2_FUZZ_SECONDS=30 tools/test.sh
#   tools/test.sh default asan    # only these stages
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tools/bootstrap.sh

FUZZ_SECONDS=${MF2_FUZZ_SECONDS:-45}
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(default asan tsan ubsan debug fuzz)

declare -a summary
passed=0
failed=0
log_dir=$(mktemp -d /tmp/mf2-test.XXXXXX)

run_stage() {
  local name=$1
  shift
  local start=$SECONDS
  local log="$log_dir/$name.log"
  echo "[test.sh] stage $name: $*" >&2
  if "$@" >"$log" 2>&1; then
    summary+=("PASS  $name ($((SECONDS - start)) s)  $(grep -Eo 'Executed [0-9]+ out of [0-9]+ tests?: .*' "$log" | tail -n1)")
    passed=$((passed + 1))
  else
    summary+=("FAIL  $name ($((SECONDS - start)) s)  log: $log")
    failed=$((failed + 1))
    grep -E "FAILED|ERROR|error:|Failure|WARNING: .*Sanitizer|SUMMARY" "$log" | head -n 40 >&2
  fi
}

fuzz_smoke() {
  bazel build --config=fuzz //fuzz/... || return 1
  local targets
  targets=$(bazel query 'attr(linkopts, "-fsanitize=fuzzer", kind(cc_binary, //fuzz/...))' 2>/dev/null |
    sed 's#^//fuzz:##')
  [ -n "$targets" ] || targets=$(bazel query 'kind(cc_binary, //fuzz/...)' 2>/dev/null | sed 's#^//fuzz:##')
  [ -n "$targets" ] || { echo "no fuzz targets found"; return 1; }
  local t rc=0
  for t in $targets; do
    local work
    work=$(mktemp -d)
    cp -r "fuzz/corpus/$t/." "$work/"
    echo "fuzz smoke: $t for ${FUZZ_SECONDS}s"
    local out="$log_dir/fuzz-$t.log"
    if "bazel-bin/fuzz/$t" -max_total_time="$FUZZ_SECONDS" -timeout=60 -print_final_stats=1 \
        "$work" >"$out" 2>&1; then
      grep -E "^#[0-9]+.*(DONE|pulse)|stat::" "$out" | tail -n 8
    else
      echo "fuzz smoke: $t FAILED (full log: $out)"
      grep -E -m1 -A25 "CHECK failed|FUZZ_CHECK|ERROR|runtime error|^mf2:" "$out"
      rc=1
    fi
    rm -rf "$work"
  done
  return $rc
}

# Tests always run: a result cached by an earlier run (the disk cache is shared across clones)
# would let a nondeterministic stress test pass without running.
for s in "${stages[@]}"; do
  case "$s" in
    default) run_stage default bazel test --nocache_test_results //... ;;
    asan | tsan | ubsan | debug) run_stage "$s" bazel test --nocache_test_results "--config=$s" //... ;;
    fuzz) run_stage fuzz-smoke fuzz_smoke ;;
    *) echo "unknown stage $s" >&2; exit 2 ;;
  esac
done

echo
echo "MF2 test summary:"
for line in "${summary[@]}"; do echo "  $line"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
