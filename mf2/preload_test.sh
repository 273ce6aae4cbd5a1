#!/usr/bin/env bash
# Runs real programs with MF2 preloaded as their malloc and compares each output with the same
# program on glibc. None may crash or differ; misuse must be reported with the pointer.
set -uo pipefail

lib="$PWD/mf2/libmf2_malloc.so"
td="$PWD/mf2/testdata"
[ -f "$lib" ] || { echo "missing $lib"; exit 1; }
passed=0
failed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }

# same NAME CMD...: output under MF2 equals output under glibc, both exit 0.
same() {
  local name=$1
  shift
  "$@" >"$tmp/glibc.out" 2>"$tmp/glibc.err"
  local rc_glibc=$?
  LD_PRELOAD="$lib" MF2_STATS=1 "$@" >"$tmp/mf2.out" 2>"$tmp/mf2.err"
  local rc_mf2=$?
  if [ $rc_glibc -ne 0 ] || [ $rc_mf2 -ne 0 ]; then
    fail "$name (exit glibc=$rc_glibc mf2=$rc_mf2)"
    tail -n 20 "$tmp/mf2.err"
    return
  fi
  if ! cmp -s "$tmp/glibc.out" "$tmp/mf2.out"; then
    fail "$name (output differs)"
    diff "$tmp/glibc.out" "$tmp/mf2.out" | head -n 20
    return
  fi
  if ! grep -q '^mf2_stats: route=[a-z_]* reuse_rate=' "$tmp/mf2.err"; then
    fail "$name (MF2 was not the allocator: no stats at exit)"
    return
  fi
  pass "$name ($(wc -l <"$tmp/mf2.out") lines identical; $(grep -o 'reuse_rate=[0-9.]*' "$tmp/mf2.err" | tail -n1))"
}

# Python: dicts, lists, strings, json, sorting, a generator pipeline, gc.
cat >"$tmp/work.py" <<'PY'
import json, hashlib, gc, collections
d = {}
for i in range(200000):
    d["k%d" % i] = [i, str(i) * (i % 7), {"x": i}]
s = json.dumps({k: v for k, v in list(d.items())[:20000]})
obj = json.loads(s)
words = collections.Counter(w for v in obj.values() for w in v[1])
lst = sorted((str(i)[::-1] for i in range(300000)))
del d
gc.collect()
h = hashlib.sha256()
h.update(s.encode()); h.update("".join(lst[:1000]).encode()); h.update(repr(sorted(words.items())).encode())
print(len(s), len(obj), len(lst), h.hexdigest())
PY
same python3 /usr/bin/python3 "$tmp/work.py"

# sqlite3: a few thousand inserts and queries.
cat >"$tmp/work.sql" <<'SQL'
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v REAL, blob BLOB);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000)
INSERT INTO t(name, v, blob) SELECT printf('name-%d', x), x * 1.5, randomblob(x % 500) FROM c;
CREATE INDEX t_name ON t(name);
SELECT count(*), sum(v), sum(length(blob)) FROM t;
SELECT name FROM t WHERE name LIKE 'name-42%' ORDER BY name;
UPDATE t SET name = name || '-x' WHERE id % 3 = 0;
DELETE FROM t WHERE id % 5 = 0;
SELECT count(*), min(name), max(name) FROM t;
SELECT id % 10 AS k, count(*), avg(v) FROM t GROUP BY k ORDER BY k;
SQL
same sqlite3 /usr/bin/sqlite3 :memory: ".read $tmp/work.sql"

same handoff "$td/handoff"
same fork_while_allocating "$td/fork_while_allocating"
same tls_teardown "$td/tls_teardown"

# MF2's own thread, the background reclaimer: never in a single-threaded program; once a second
# thread allocated, one (it flushes threads that went idle); none with MF2_BACKGROUND_RECLAIM=0,
# for programs that must be single-threaded again (unshare(CLONE_NEWUSER): README.md).
own_threads() {
  local name=$1 mode=$2 want=$3
  shift 3
  local got
  got=$(env "$@" LD_PRELOAD="$lib" "$td/own_threads" "$mode" 2>&1)
  if [ "$got" = "threads $want" ]; then
    pass "own_threads $name: $got"
  else
    fail "own_threads $name: '$got', want 'threads $want'"
  fi
}
own_threads single single 1
own_threads two two 2
own_threads two_without_reclaimer two 1 MF2_BACKGROUND_RECLAIM=0
# A child of a threaded process has one thread, which takes a heap again: no reclaimer (it
# started one when its registry, inherited from the parent, counted several heaps).
own_threads fork_child fork 1

# operator new's failure: std::bad_alloc and the new-handler as under glibc, through the weak
# references to the C++ runtime in MF2's shared library (mf2/malloc_shim.cc).
same new_failure "$td/new_failure"
# A C program: MF2 brings no C++ runtime into it (the shared library needs only libc) ...
same no_cxx_runtime_maps "$td/no_cxx_runtime" maps
# ... and its operator new, called there anyway, reports that it cannot throw and aborts.
LD_PRELOAD="$lib" "$td/no_cxx_runtime" new >"$tmp/nocxx.out" 2>&1
rc=$?
if [ $rc -ne 0 ] &&
    grep -q "^mf2: operator new: out of memory, and the process has no C++ runtime" "$tmp/nocxx.out"
then
  pass "no_cxx_runtime new: $(grep -m1 '^mf2:' "$tmp/nocxx.out")"
else
  fail "no_cxx_runtime new (exit $rc)"
  cat "$tmp/nocxx.out"
fi

# MF2's own test binaries, their allocations (gtest, std::) served by the preloaded MF2.
for t in size_class_test page_source_test heap_test mf2_test; do
  if LD_PRELOAD="$lib" "$PWD/mf2/$t" >"$tmp/$t.log" 2>&1; then
    pass "$t under MF2"
  else
    fail "$t under MF2"
    tail -n 30 "$tmp/$t.log"
  fi
done

# Large blocks: realloc grows in place (the data survives; stderr has the time), calloc does not
# touch a fresh mapping, and freed caches are released when the address space runs out.
same large_blocks_grow "$td/large_blocks" grow
echo "  MF2: $(grep -h '^grow:' "$tmp/mf2.err")"
echo "  glibc: $(grep -h '^grow:' "$tmp/glibc.err")"
same large_blocks_calloc "$td/large_blocks" calloc
same large_blocks_oom "$td/large_blocks" oom

# Misuse is reported in one line naming the kind, the call, the pointer and what was wrong, and
# aborts by default. expect_report PROGRAM MODE PATTERN: exit non-zero, a line matching PATTERN.
expect_report() {
  local prog=$1 mode=$2 pattern=$3
  LD_PRELOAD="$lib" "$td/$prog" "$mode" >"$tmp/misuse.out" 2>&1
  local rc=$?
  if [ $rc -ne 0 ] && grep -Eq "$pattern" "$tmp/misuse.out"; then
    pass "$prog $mode reported: $(grep -m1 '^mf2:' "$tmp/misuse.out")"
  else
    fail "$prog $mode (exit $rc)"
    cat "$tmp/misuse.out"
  fi
}
hex='0x[0-9a-f]+'
expect_report misuse double "^mf2: double free in free\($hex\): "
expect_report misuse stack "^mf2: foreign pointer in free\($hex\): not from MF2"
expect_report misuse interior "^mf2: not a block start in free\($hex\): "
block="\\(block $hex, 1048576 bytes\\)$"
expect_report misuse_report large-double \
  "^mf2: double free in free\($hex\): large block was already freed $block"
inside="points inside a live large block, not at its start"
expect_report misuse_report large-interior "^mf2: not a block start in free\($hex\): $inside $block"

# expect_continues MODE STDOUT PATTERN...: with MF2_ON_ERROR=report the program goes on (exit 0),
# prints STDOUT, and its stderr has a line matching each PATTERN.
expect_continues() {
  local mode=$1 expected=$2
  shift 2
  LD_PRELOAD="$lib" MF2_ON_ERROR=report "$td/misuse_report" "$mode" >"$tmp/m.out" 2>"$tmp/m.err"
  local rc=$? ok=1 pattern
  [ $rc -eq 0 ] && [ "$(cat "$tmp/m.out")" = "$expected" ] || ok=0
  for pattern in "$@"; do grep -Eq "$pattern" "$tmp/m.err" || ok=0; done
  if [ $ok -eq 1 ]; then
    pass "misuse_report $mode with MF2_ON_ERROR=report continues: $(head -n1 "$tmp/m.err")"
  else
    fail "misuse_report $mode with MF2_ON_ERROR=report (exit $rc)"
    cat "$tmp/m.out" "$tmp/m.err" | head -n 20
  fi
}
if LD_PRELOAD="$lib" MF2_ON_ERROR=report "$td/misuse" double >"$tmp/m.out" 2>&1 &&
    grep -q "^mf2: double free in free(" "$tmp/m.out"; then
  pass "misuse double with MF2_ON_ERROR=report continues"
else
  fail "misuse double with MF2_ON_ERROR=report"
fi
einval='realloc returned NULL, errno EINVAL'
expect_continues realloc-freed "$(printf '%s\nrealloc-freed done' "$einval")" \
  "^mf2: use after free in realloc\($hex\): large block was freed before"
expect_continues realloc-foreign "$(printf '%s\nrealloc-foreign done' "$einval")" \
  "^mf2: foreign pointer in realloc\($hex\): "
# 1,000 double frees: 10 reports, one line saying the rest are suppressed, their number at exit.
expect_continues many "many done" \
  "^mf2: further double free reports are suppressed" \
  "^mf2: 990 misuse reports were suppressed \(double free: 990\)$"
n=$(grep -c '^mf2: ' "$tmp/m.err")
if [ "$n" -eq 12 ]; then
  pass "1,000 double frees print 12 lines"
else
  fail "1,000 double frees print $n lines, not 10 reports + 2"
fi

# Options: a bad value is named in one warning with the default kept; MF2_VERBOSE=1 lists them.
LD_PRELOAD="$lib" MF2_VERBOSE=1 MF2_PAGE_CACHE_MB=-1 MF2_ROUTE=foo MF2_RECLAIM_IDLE=false \
  MF2_LARGE_CACHE_MB=32M "$td/misuse_report" options >"$tmp/o.out" 2>"$tmp/o.err"
w1="mf2: warning: MF2_PAGE_CACHE_MB=-1 ignored (not a number; expected a number of MiB, or one"
w1+=" with a K, M or G suffix); using the default 32 MiB"
w2="mf2: warning: MF2_ROUTE=foo ignored (not a route; expected route_s, route_p or cda); using"
w2+=" the default route_s"
ok=1
for line in "$w1" "$w2"; do
  grep -Fxq -- "$line" "$tmp/o.err" || { ok=0; echo "missing: $line"; }
done
for prefix in "mf2: option MF2_PAGE_CACHE_MB=32 MiB (default): " \
    "mf2: option MF2_RECLAIM_IDLE=0: " "mf2: option MF2_LARGE_CACHE_MB=32 MiB: "; do
  grep -Fq -- "$prefix" "$tmp/o.err" || { ok=0; echo "missing: $prefix"; }
done
if [ $ok -eq 1 ] && [ "$(grep -c '^mf2: warning: ' "$tmp/o.err")" -eq 2 ]; then
  pass "option warnings and MF2_VERBOSE ($(grep -c '^mf2: option ' "$tmp/o.err") options listed)"
else
  fail "option warnings and MF2_VERBOSE"
  cat "$tmp/o.err"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
