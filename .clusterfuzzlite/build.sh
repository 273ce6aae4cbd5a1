#!/bin/bash -eu
# Builds every MF2 fuzz target for ClusterFuzzLite / OSS-Fuzz, without Bazel: the engine's
# compile step runs this with $CC $CXX $CFLAGS $CXXFLAGS $LIB_FUZZING_ENGINE $OUT (and $SRC,
# $WORK) set. tools/test.sh runs it locally with clang 14 and libFuzzer (see the `fuzz` stage).
#
# The targets and their sources come from the BUILD files (tools/fuzz_sources.py), so a fuzz
# target or a library source added there is built here too; a source listed but missing fails.
# Outputs in $OUT: each target's binary and its seed corpus fuzz/corpus/NAME as
# NAME_seed_corpus.zip.
#
# Environment: MF2_SRC (the clone; default: the current directory, the Dockerfile's WORKDIR),
# ABSL_DIR (Abseil's sources: the headers are all MF2 uses; default: $SRC/abseil-cpp from the
# Dockerfile, else /opt/mf2-deps/abseil-cpp from tools/bootstrap.sh).
set -euo pipefail  # also when run as `bash build.sh`, which ignores the options on the #! line

mf2=${MF2_SRC:-$PWD}
[ -f "$mf2/fuzz/BUILD" ] || { echo "build.sh: $mf2 is not an MF2 clone (set MF2_SRC)" >&2; exit 1; }
cd "$mf2"
: "${CXX:?build.sh: set CXX}" "${OUT:?build.sh: set OUT}"
: "${LIB_FUZZING_ENGINE:?build.sh: set LIB_FUZZING_ENGINE (e.g. -fsanitize=fuzzer)}"
CXXFLAGS=${CXXFLAGS:-}

absl=""
for d in "${ABSL_DIR:-}" "${SRC:-/nonexistent}/abseil-cpp" /opt/mf2-deps/abseil-cpp; do
  if [ -n "$d" ] && [ -f "$d/absl/base/thread_annotations.h" ]; then absl=$d; break; fi
done
[ -n "$absl" ] || { echo "build.sh: no Abseil sources found (set ABSL_DIR)" >&2; exit 1; }

listing=$(python3 tools/fuzz_sources.py "$mf2")
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [ -n "${WORK:-}" ]; then
  work=$WORK/mf2-objs
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi

# MF2's checking-only code (fuzz/coverage_ignorelist.txt) gets no coverage instrumentation, as
# the harnesses' own checks do not: when the flags instrument for coverage (the compiler accepts
# the ignorelist without calling it unused), every compile takes the list.
ignorelist=()
probe=$(mktemp -d)
echo 'int mf2_probe(int x) { return x > 3; }' >"$probe/probe.cc"
if $CXX $CXXFLAGS -Werror=unused-command-line-argument \
    -fsanitize-coverage-ignorelist="$mf2/fuzz/coverage_ignorelist.txt" \
    -c "$probe/probe.cc" -o "$probe/probe.o" 2>/dev/null; then
  ignorelist=(-fsanitize-coverage-ignorelist="$mf2/fuzz/coverage_ignorelist.txt")
else
  echo "build.sh: no coverage ignorelist (no coverage in the flags, or an older compiler)" >&2
fi
rm -rf "$probe"

# Object files are shared between targets: compile each source once.
declare -A compiled=()
compile() {
  local src=$1 obj="$work/${1//\//_}.o"
  if [ -z "${compiled[$src]:-}" ]; then
    echo "build.sh: compiling $src" >&2
    # -std=c++17 last: MF2 is C++17 whatever the engine's default.
    $CXX $CXXFLAGS "${ignorelist[@]}" -std=c++17 -I"$mf2" -I"$absl" -c "$src" -o "$obj"
    compiled[$src]=$obj
  fi
}

while read -r name words; do
  objs=()
  for w in $words; do
    case "$w" in
      @com_google_absl) ;;  # headers only: -I$absl above
      @*) echo "build.sh: $name needs external repository $w, which this script does not provide" >&2; exit 1 ;;
      *) compile "$w"; objs+=("${compiled[$w]}") ;;
    esac
  done
  echo "build.sh: linking $OUT/$name" >&2
  $CXX $CXXFLAGS "${objs[@]}" $LIB_FUZZING_ENGINE -pthread -o "$OUT/$name"
  corpus=fuzz/corpus/$name
  [ -d "$corpus" ] && [ -n "$(ls -A "$corpus")" ] || { echo "build.sh: $corpus is empty" >&2; exit 1; }
  rm -f "$OUT/${name}_seed_corpus.zip"
  (cd "$corpus" && zip -q -r "$OUT/${name}_seed_corpus.zip" .)
done <<<"$listing"
echo "build.sh: built $(wc -l <<<"$listing") fuzz targets into $OUT" >&2
