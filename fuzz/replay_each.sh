#!/usr/bin/env bash
# Replays each crash reproducer given, alone, in a fresh process of REPLAYER (a fuzz target's
# binary: the corpus replayer, or libFuzzer under --config=fuzz; both run the files they are
# given). The corpus test replays every file in one process, where the inputs before a reproducer
# leave heaps, the page source and the large-mapping cache in some state; a reproducer found in a
# process of its own (crash_freed_large_record_outlives_its_range) can then pass there and still
# fail here.
# Usage: replay_each.sh REPLAYER FILE...
set -euo pipefail
replayer=$1
shift
[ $# -gt 0 ] || { echo "replay_each: no reproducer given" >&2; exit 1; }
failed=0
for f in "$@"; do
  if "$replayer" "$f" >"${TEST_TMPDIR:-/tmp}/replay.log" 2>&1; then
    echo "PASS $(basename "$f")"
  else
    echo "FAIL $(basename "$f"):"
    tail -n 20 "${TEST_TMPDIR:-/tmp}/replay.log"
    failed=1
  fi
done
exit $failed
