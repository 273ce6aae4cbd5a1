#!/bin/sh
# Head-to-head runner wrapper: finds the benchmark programs and run_h2h.py, then runs it.
#
#   bazel run -c opt //bench:head_to_head -- --quick      (results go to <workspace>/bench/results/)
#   bench/run_h2h.sh --quick                              (after `bazel build -c opt //bench:all`)
#
# Under `bazel run` the programs come from this target's runfiles and the MF2 preload library and
# the results folder are found through $BUILD_WORKSPACE_DIRECTORY. Run by hand, the programs come
# from <workspace>/bazel-out/k8-opt/bin/bench (else bazel-bin/bench, with a warning).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
runfiles="${RUNFILES_DIR:-}"
if [ -z "$runfiles" ] && [ -d "$0.runfiles" ]; then
  runfiles="$0.runfiles"
fi

if [ -n "$runfiles" ] && [ -x "$runfiles/mf2/bench/larson" ]; then
  bin_dir="$runfiles/mf2/bench"
  script="$runfiles/mf2/bench/run_h2h.py"
  workspace="${BUILD_WORKSPACE_DIRECTORY:-}"
else
  workspace="${BUILD_WORKSPACE_DIRECTORY:-$(cd "$here/.." && pwd)}"
  # Prefer the optimised build: bazel-bin follows whatever configuration was built last.
  bin_dir="$workspace/bazel-out/k8-opt/bin/bench"
  if [ ! -x "$bin_dir/larson" ]; then
    bin_dir="$workspace/bazel-bin/bench"
    echo "run_h2h.sh: WARNING: no -c opt build of //bench found; using $bin_dir" >&2
  fi
  script="$here/run_h2h.py"
fi

if [ -z "$workspace" ]; then
  echo "run_h2h.sh: cannot find the workspace; use 'bazel run' or set BUILD_WORKSPACE_DIRECTORY" >&2
  exit 2
fi

# Under `bazel run`, the MF2 library built with this target (same configuration) is in runfiles.
if [ -n "$runfiles" ] && [ -f "$runfiles/mf2/mf2/libmf2_malloc.so" ]; then
  set -- --mf2-lib "$runfiles/mf2/mf2/libmf2_malloc.so" "$@"
fi

exec python3 "$script" --bin-dir "$bin_dir" --workspace "$workspace" "$@"
