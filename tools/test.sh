#!/usr/bin/env bash
# The whole MF2 test suite, as CI runs it (.ci/run calls this). Run tools/test.sh --help.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

ALL_STAGES=(commits default asan tsan ubsan debug hardened fuzz install bazel-dep)
# Stages run only when named (not part of the gate: too long for CI's limit).
OPTIONAL_STAGES=(mutants)
usage() {
  cat <<EOF
usage: tools/test.sh [STAGE...]      (no stage: all of them, in this order)

Stages:
  commits     every commit subject since the check was added is <= 72 characters
              (tools/commit_subjects.sh; skipped outside a git checkout)
  default     bazel test //... (every test, including the fuzz corpora, stress tests, spin models)
  asan        the same under AddressSanitizer + LeakSanitizer
  tsan        the same under ThreadSanitizer (empty suppressions)
  ubsan       the same under UndefinedBehaviorSanitizer (no recovery)
  debug       the same with MF2's expensive invariant checks on every operation
  hardened    the allocator's tests, fuzz corpora and stress tests with --config=hardened
              (encoded free-list links)
  fuzz        the libFuzzer targets built by .clusterfuzzlite/build.sh (clang 14, libFuzzer, ASan,
              UBSan), each run for \$MF2_FUZZ_SECONDS beyond its seed corpus; also checks that
              bazel build --config=fuzz //fuzz/... still builds (the overnight command's binaries)
  install     bazel run -c opt //:install into a temporary prefix, then the consumers in
              examples/c-pkgconfig (gcc + pkg-config, shared and static) and examples/cmake
              (find_package(mf2)) build and run with MF2 as their malloc
  bazel-dep   examples/bazel, a workspace that depends on @mf2, built and tested with gcc and
              with clang 14

Optional stage (only when named; not in the default list, it takes an hour or more):
  mutants     tools/mutate.sh: every tools/mutants/*.patch applied to a scratch copy of the
              committed tree, the tests its header names run (default and TSan); fails if a
              mutant survives or a patch no longer applies (VERIFICATION.md, "Mutation check")

Environment:
  MF2_FUZZ_SECONDS=N       seconds per fuzz target (default 45)
  MF2_PROGRESS_SECONDS=N   a progress line for a running stage every N seconds (default 60)

Each stage prints a line when it starts, progress while it runs, and its result with its time;
the end is one summary line per stage and "N passed, M failed" (exit status non-zero if any
failed). Logs stay in a temporary folder named in the output. Installs what it needs from
Debian first (tools/bootstrap.sh --extras test).
EOF
}

stages=()
for arg in "$@"; do
  case "$arg" in
    -h | --help) usage; exit 0 ;;
    -*) echo "tools/test.sh: unknown option $arg" >&2; usage >&2; exit 2 ;;
    *)
      if [[ " ${ALL_STAGES[*]} ${OPTIONAL_STAGES[*]} " != *" $arg "* ]]; then
        echo "tools/test.sh: unknown stage '$arg' (stages: ${ALL_STAGES[*]} ${OPTIONAL_STAGES[*]})" >&2
        exit 2
      fi
      stages+=("$arg")
      ;;
  esac
done
[ ${#stages[@]} -gt 0 ] || stages=("${ALL_STAGES[@]}")

bash tools/bootstrap.sh --extras test || exit 1

FUZZ_SECONDS=${MF2_FUZZ_SECONDS:-45}
PROGRESS_SECONDS=${MF2_PROGRESS_SECONDS:-60}
ROOT=$PWD
declare -a summary
passed=0
failed=0
log_dir=$(mktemp -d /tmp/mf2-test.XXXXXX)
echo "[test.sh] stages: ${stages[*]}; logs in $log_dir" >&2

# Every PROGRESS_SECONDS, the stage's elapsed time and the last line of its log (Bazel's
# "[done / total]" line, a test result, a fuzz target's status).
progress() {
  local name=$1 log=$2 start=$3
  while sleep "$PROGRESS_SECONDS"; do
    local last
    last=$(tr '\r' '\n' <"$log" 2>/dev/null | grep -v '^[[:space:]]*$' | tail -n1 | cut -c1-110)
    echo "[test.sh]   $name: $((SECONDS - start)) s, ${last:-no output yet}" >&2
  done
}

run_stage() {
  local name=$1
  shift
  local start=$SECONDS
  local log="$log_dir/$name.log"
  echo "[test.sh] stage $name: started ($*)" >&2
  progress "$name" "$log" "$start" &
  local ticker=$!
  local rc=0
  "$@" >"$log" 2>&1 || rc=$?
  kill "$ticker" 2>/dev/null
  wait "$ticker" 2>/dev/null
  local took=$((SECONDS - start))
  if [ "$rc" = 0 ]; then
    local detail
    detail=$(grep -Eo 'Executed [0-9]+ out of [0-9]+ tests?: .*|^STAGE-RESULT: .*' "$log" | tail -n1)
    detail=${detail#STAGE-RESULT: }
    summary+=("PASS  $name (${took} s)  $detail")
    passed=$((passed + 1))
    echo "[test.sh] stage $name: PASS in ${took} s  $detail" >&2
  else
    summary+=("FAIL  $name (${took} s)  log: $log")
    failed=$((failed + 1))
    echo "[test.sh] stage $name: FAIL in ${took} s (log: $log)" >&2
    grep -E -A6 "FAILED|ERROR|error:|Failure|FAIL:|WARNING: .*Sanitizer|SUMMARY|fuzz oracle failed" \
      "$log" | head -n 40 >&2
    # A fuzz target's crash input, whole (the lines after "base64:"), however long the above.
    sed -n '/^fuzz: crash input .*base64:$/,/^fuzz: end of crash input$/p' "$log" | head -n 200 >&2
  fi
}

# --- fuzz: ClusterFuzzLite's build script, locally, then each target briefly. ---
fuzz_smoke() {
  echo "== bazel build --config=fuzz //fuzz/... (the overnight command's binaries)"
  bazel build --config=fuzz //fuzz/... || return 1
  local out="$log_dir/fuzz-out"
  local flags="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=all"
  echo "== .clusterfuzzlite/build.sh into $out"
  CC=clang-14 CXX=clang++-14 CFLAGS="$flags" CXXFLAGS="$flags" \
    LIB_FUZZING_ENGINE=-fsanitize=fuzzer OUT="$out" WORK="$log_dir/fuzz-work" \
    bash .clusterfuzzlite/build.sh || return 1
  local targets
  targets=$(python3 tools/fuzz_sources.py | cut -d' ' -f1)
  local t rc=0 n=0
  for t in $targets; do
    [ -x "$out/$t" ] || { echo "fuzz: build.sh did not produce $out/$t"; rc=1; continue; }
    local corpus="$log_dir/fuzz-corpus-$t"
    mkdir -p "$corpus" "$log_dir/fuzz-crashes-$t"
    unzip -q -o "$out/${t}_seed_corpus.zip" -d "$corpus" || { rc=1; continue; }
    echo "== fuzz: $t for ${FUZZ_SECONDS} s from $(ls "$corpus" | wc -l) seeds"
    local flog="$log_dir/fuzz-$t.log"
    if (cd "$log_dir" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 "$out/$t" \
        -max_total_time="$FUZZ_SECONDS" -timeout=60 -rss_limit_mb=4096 -print_final_stats=1 \
        -artifact_prefix="$log_dir/fuzz-crashes-$t/" "$corpus") >"$flog" 2>&1; then
      grep -E "^#[0-9]+.*(DONE|pulse)|stat::" "$flog" | tail -n 8
      n=$((n + 1))
    else
      echo "fuzz: $t FAILED (log: $flog; inputs in $log_dir/fuzz-crashes-$t/)"
      # What failed first (an oracle, an MF2 CHECK, a sanitizer), then the input, so that a CI
      # log that is all one has still replays: base64 -d into a file, then
      # `bazel run //fuzz:$t -- FILE` (the replayer; or the libFuzzer binary with FILE).
      grep -E -m1 -B2 -A25 "fuzz oracle failed|CHECK failed|FUZZ_CHECK|ERROR|runtime error|^mf2:" \
        "$flog"
      local crash
      for crash in "$log_dir/fuzz-crashes-$t"/*; do
        [ -f "$crash" ] || continue
        if [ "$(stat -c %s "$crash")" -le 16384 ]; then
          echo "fuzz: crash input $(basename "$crash") ($(stat -c %s "$crash") bytes), base64:"
          base64 -w 100 "$crash"
          echo "fuzz: end of crash input"
        else
          echo "fuzz: crash input $(basename "$crash") is $(stat -c %s "$crash") bytes (not printed)"
        fi
      done
      rc=1
    fi
  done
  [ "$rc" = 0 ] && echo "STAGE-RESULT: $n fuzz targets built by .clusterfuzzlite/build.sh, ${FUZZ_SECONDS} s each"
  return $rc
}

# --- install: //:install into a temporary prefix, then the consumers outside Bazel. ---
install_consumers() {
  local prefix="$log_dir/prefix" work="$log_dir/consumers"
  rm -rf "$prefix" "$work"
  mkdir -p "$work"
  echo "== bazel run -c opt //:install -- --prefix $prefix"
  bazel run -c opt //:install -- --prefix "$prefix" || return 1
  ls -lR "$prefix"
  readelf -d "$prefix/lib/libmf2.so" | grep SONAME || return 1
  export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
  echo "== pkg-config: $(pkg-config --modversion mf2): $(pkg-config --cflags --libs mf2)"
  local src="$ROOT/examples/c-pkgconfig/main.c"
  echo "== gcc main.c \$(pkg-config --cflags --libs mf2)   (libmf2.so)"
  # shellcheck disable=SC2046
  gcc "$src" $(pkg-config --cflags --libs mf2) -o "$work/c_shared" || return 1
  ldd "$work/c_shared" | grep libmf2 || return 1
  LD_LIBRARY_PATH="$prefix/lib" "$work/c_shared" || return 1
  echo "== gcc main.c -static \$(pkg-config --static --cflags --libs mf2)   (libmf2.a)"
  # shellcheck disable=SC2046
  gcc "$src" $(pkg-config --cflags mf2) -static $(pkg-config --static --libs mf2) \
    -o "$work/c_static" || return 1
  "$work/c_static" || return 1
  echo "== gcc main.c libmf2.a, dynamically linked otherwise (Libs.private; no C++ runtime)"
  # shellcheck disable=SC2046
  gcc "$src" $(pkg-config --cflags mf2) "$prefix/lib/libmf2.a" \
    $(pkg-config --static --libs-only-other mf2) -o "$work/c_archive" || return 1
  ! ldd "$work/c_archive" | grep libstdc++ || return 1
  "$work/c_archive" || return 1
  echo "== the shared library needs only libc"
  readelf -d "$prefix/lib/libmf2.so" | grep NEEDED
  [ "$(readelf -d "$prefix/lib/libmf2.so" | grep -c NEEDED)" = 1 ] || return 1
  echo "== cmake examples/cmake with find_package(mf2)"
  cmake -S "$ROOT/examples/cmake" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_COMPILER=gcc -DCMAKE_CXX_COMPILER=g++ || return 1
  cmake --build "$work/cmake" -- -j2 || return 1
  local b
  for b in uses_mf2 uses_mf2_static uses_mf2_c; do
    echo "== $b"
    "$work/cmake/$b" || return 1
  done
  echo "STAGE-RESULT: //:install, then pkg-config (shared, static, archive) and CMake (3 programs)"
}

# --- bazel-dep: examples/bazel depends on @mf2 (this clone), with gcc and with clang. ---
bazel_dependency() {
  local ws="$log_dir/bazel-consumer"
  rm -rf "$ws"
  cp -r examples/bazel "$ws"
  local ob="$log_dir/bazel-consumer-output"
  local rc=0 cc
  for cc in gcc:g++ clang-14:clang++-14; do
    echo "== examples/bazel with CC=${cc%%:*}"
    (cd "$ws" && bazel --output_base="$ob" test --override_repository=mf2="$ROOT" \
      --repo_env=CC="${cc%%:*}" --repo_env=CXX="${cc#*:}" \
      --disk_cache="$HOME/.cache/mf2-bazel-disk" --spawn_strategy=processwrapper-sandbox \
      --test_output=all --nocache_test_results //...) || { rc=1; break; }
  done
  (cd "$ws" && bazel --output_base="$ob" clean --expunge) >/dev/null 2>&1
  rm -rf "$ob"
  [ "$rc" = 0 ] && echo "STAGE-RESULT: @mf2//mf2 and @mf2//mf2:malloc from another workspace, gcc and clang-14"
  return $rc
}

# --- mutants: the mutation check (optional stage). ---
mutants_stage() {
  local rc=0
  bash tools/mutate.sh || rc=$?
  [ "$rc" = 0 ] && echo "STAGE-RESULT: every mutant of tools/mutants caught"
  return $rc
}

# Tests always run: a result cached by an earlier run (the disk cache is shared across clones)
# would let a nondeterministic stress test pass without running.
for s in "${stages[@]}"; do
  case "$s" in
    commits) run_stage commits bash tools/commit_subjects.sh ;;
    default) run_stage default bazel test --nocache_test_results //... ;;
    asan | tsan | ubsan | debug) run_stage "$s" bazel test --nocache_test_results "--config=$s" //... ;;
    hardened) run_stage hardened bazel test --nocache_test_results --config=hardened //mf2/... //fuzz/... //stress/... ;;
    fuzz) run_stage fuzz fuzz_smoke ;;
    install) run_stage install install_consumers ;;
    bazel-dep) run_stage bazel-dep bazel_dependency ;;
    mutants) run_stage mutants mutants_stage ;;
  esac
done

echo
echo "MF2 test summary:"
for line in "${summary[@]}"; do echo "  $line"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
