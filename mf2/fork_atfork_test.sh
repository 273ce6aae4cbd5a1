#!/usr/bin/env bash
# fork() with other libraries' fork handlers that allocate (issue 10, item 2): a library whose
# handlers were registered before MF2's runs its prepare handler while MF2 holds its locks.
# Each program forks repeatedly while threads allocate; a deadlock shows as a timeout.
#   fork_atfork_static_mf2: MF2 linked in statically (//mf2:malloc)
#   fork_atfork + LD_PRELOAD of libmf2_malloc.so
#   fork_option_set: threads change options (mf2_option_set) while the main thread forks
set -uo pipefail

lib="$PWD/mf2/libmf2_malloc.so"
td="$PWD/mf2/testdata"
limit=${MF2_FORK_TEST_TIMEOUT:-60}
passed=0
failed=0

run() {
  local name=$1
  shift
  local out rc
  # timeout kills the whole process group, so a child stuck in a handler goes too.
  out=$(timeout "$limit" "$@" 2>&1)
  rc=$?
  if [ $rc -eq 124 ]; then
    echo "FAIL $name: no exit within ${limit}s (fork deadlocked in an allocating fork handler)"
    failed=$((failed + 1))
  elif [ $rc -ne 0 ]; then
    echo "FAIL $name: exit $rc"
    echo "$out" | tail -n 20
    failed=$((failed + 1))
  else
    echo "PASS $name: $out"
    passed=$((passed + 1))
  fi
}

run static_mf2 "$td/fork_atfork_static_mf2"
run preload env LD_PRELOAD="$lib" "$td/fork_atfork"
# Under glibc's malloc, for reference (the program itself must be sound).
run glibc "$td/fork_atfork"
# Other threads inside mf2_option_set (the policy lock) at the moment of fork.
run option_set "$td/fork_option_set"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
