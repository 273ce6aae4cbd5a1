#!/usr/bin/env bash
# Runs every spin model of MF2's remote-free protocol and checks the expected outcome:
#   verify  -> spin's exhaustive search completes with "errors: 0"
#   mutant  -> spin finds a counterexample, and the violated assertion is the expected one
# Usage: bash model/run_models.sh            (from any directory)
#        bazel test //model:spin_models_test
# Needs spin (Debian package `spin`), gcc (spin preprocesses with it) and cc on PATH.
set -u

# ---- locate the .pml files: next to this script, or in the Bazel runfiles tree ----
find_model_dir() {
  local d
  for d in "$(dirname "${BASH_SOURCE[0]}")" \
           "${RUNFILES_DIR:-/nonexistent}/mf2/model" \
           "${TEST_SRCDIR:-/nonexistent}/mf2/model" \
           "$PWD/model"; do
    if [[ -f "$d/remote_free.pml" ]]; then (cd "$d" && pwd -P); return 0; fi
  done
  return 1
}
MODEL_DIR="$(find_model_dir)" || { echo "FAIL cannot find remote_free.pml"; echo "0 passed, 1 failed"; exit 1; }

for tool in spin gcc cc; do
  command -v "$tool" >/dev/null || { echo "FAIL '$tool' not on PATH"; echo "0 passed, 1 failed"; exit 1; }
done

WORK_ROOT="${TEST_TMPDIR:-}"
OWN_WORK_ROOT=0
if [[ -z "$WORK_ROOT" ]]; then
  WORK_ROOT="$(mktemp -d)"
  OWN_WORK_ROOT=1
fi

# Compile flags for pan: safety properties only (assertions, invalid end states), exhaustive
# search with state compression. -m is the depth bound; every model's depth is far below it and a
# verify run that hits it fails (the search would be incomplete).
PAN_CFLAGS=(-w -O0 -DSAFETY -DCOLLAPSE)   # -O0: pan.c compiles 10x faster, runs ~1.5x slower
PAN_RUNFLAGS=(-m20000 -w22)

# ---- the table: kind | name | model | -D defines | expected assertion (regex) | reason ----
# For mutants the regex must match the text of the assertion spin reports, so a mutant is only
# "caught" for the intended reason.
MODELS=(
  "verify|remote_free|remote_free.pml|||"
  "verify|remote_free_split_flag_first|remote_free.pml|-DSPLIT_FLAG_FIRST||"
  "verify|pending_queue_popall_1consumer|pending_queue.pml|||"
  "verify|pending_queue_popall_2consumers|pending_queue.pml|-DTWO_CONSUMERS||"
  "verify|pending_queue_singlepop_owner_only|pending_queue.pml|-DSINGLE_POP||"
  "verify|adoption_route_p_claim|adoption.pml|||"
  "verify|adoption_route_s_abandoned|adoption.pml|-DROUTE_S||"
  "verify|detached|detached.pml|||"
  "verify|litmus_sb_seq_cst|weak_litmus.pml|-DSB_SC||"
  "verify|litmus_mp_release_acquire|weak_litmus.pml|-DMP_RELACQ||"
  "verify|sweep_sb|sweep_sb.pml|||"
  "verify|ready_sb|ready_sb.pml|||"
  "verify|detach_armed|detach_armed.pml|||"
  "verify|claim_sb|claim_sb.pml|||"
  "verify|park_sb|park_sb.pml|||"
  "mutant|M1|remote_free.pml|-DMUTANT_M1|xhead\[p\]==0\)|stack taken before flag cleared: a block is stranded (flag clear, page not queued; inv 8)"
  "mutant|M2|remote_free.pml|-DMUTANT_M2|queued\[p\]<=1|no flag, enqueue on empty->non-empty edge + direct collection: page enqueued twice (inv 5)"
  "mutant|M3|adoption.pml|-DMUTANT_M3|drainers\[.*\]<=1|adoption without per-page claim: two drainers at once (inv 13)"
  "mutant|M4|pending_queue.pml|-DMUTANT_M4|occ==queued\[p\]|single-pop CAS with two consumers: ABA installs a stale next, a queued page is lost (inv 5/7)"
  "mutant|M5|remote_free.pml|-DMUTANT_M5|occ==queued\[p\]|page drained before reading pending_next: a re-push rewrites next, the walk leaves its chain and drains a page still queued (inv 5/7)"
  "mutant|M5_queue|pending_queue.pml|-DMUTANT_M5|h==0|same hazard on the bare queue: the walk follows a rewritten next into the live queue, which ends up with a cycle (inv 12)"
  "mutant|M6|adoption.pml|-DMUTANT_M6|o==owner\[1\]|Route P: owner changed after the exchange: page pushed on the old owner's queue (inv 6)"
  "mutant|M7|adoption.pml|-DMUTANT_M7|queued\[1\]<=1|Route S: page taken without holding the flag: the adopter clears a flag a producer won, page enqueued twice (inv 5)"
  "mutant|M8|remote_free.pml|-DMUTANT_M8|queued\[[p0-9]\]==0|page released when its remote stack is empty but its flag is set: released while queued (inv 11)"
  "mutant|M_a|detached.pml|-DMUTANT_MA|incs<=1|owner frees into its detached page without the flag: its local push overlaps an adopter's take-over (mutual exclusion)"
  "mutant|M_b|detached.pml|-DMUTANT_MB|onpartial\[owner\]==|FreeDetached does not re-check the owner under the flag: the old owner pushes locally into the adopter's page and links it on its own partial list (ownership of the lists; the mutual-exclusion violation is reachable too)"
  "mutant|M_c|detached.pml|-DMUTANT_MC|incs<=1|adopter stores where before the owner: Free sees where=kNowhere with its own owner id and pushes locally (mutual exclusion)"
  "mutant|M_d|detached.pml|-DMUTANT_MD|incs<=1|owner's drain runs TakeAll while the page is still kDetached: an adopter adopts it while the owner absorbs/files it (mutual exclusion)"
  "mutant|litmus_sb_relaxed|weak_litmus.pml|-DSB_RELAXED|r0==0\)&&\(r1==0|weak-memory library: store buffering with relaxed accesses reaches r0 == r1 == 0"
  "mutant|litmus_mp_relaxed|weak_litmus.pml|-DMP_RELAXED|r0==1\)&&\(r1==0|weak-memory library: message passing with a relaxed flag reads the flag but stale data"
  "mutant|W_sweep_pop|sweep_sb.pml|-DMUTANT_SWEEP_POP|released==1|weak memory: the sweep's relaxed empty check misses the page being queued while the edge winner misses the completer's count (store buffering): a whole page stays queued on an idle owner"
  "mutant|W_sweep_cas_fail|sweep_sb.pml|-DMUTANT_SWEEP_CAS_FAIL|released==1|weak memory: the try-lock CAS fails on a stale 'sweeping' (relaxed failure order) while the sweeper's re-check misses the request: a whole page stays queued"
  "mutant|W_sweep_wanted_store|sweep_sb.pml|-DMUTANT_SWEEP_WANTED_STORE|released==1|weak memory: the sweeper's store 'wanted = false' overwrites a request without acquiring it; its relaxed Peek reads the page's count stale and it gives the whole page back"
  "mutant|W_claim_cas_fail|claim_sb.pml|-DMUTANT_CLAIM_CAS_FAIL|processed==1|weak memory: a freer's claim CAS of an exited thread's heap fails on a stale claim (relaxed failure order) while the releasing holder misses the page it queued: the page stays on a queue nobody drains"
  "mutant|W_park_no_fence|park_sb.pml|-DMUTANT_NO_FENCE|incs==0|idle flush without the heavy fence (membarrier): the parker misses the owner's busy flag while the owner misses the park request (store buffering): both act on the owner's caches at once"
  "mutant|W_park_check_first|park_sb.pml|-DMUTANT_CHECK_FIRST|incs==0|the owner reads the park state before it sets its busy flag: a park granted between the two overlaps the owner's operation"
  "mutant|W_park_endop_relaxed|park_sb.pml|-DMUTANT_ENDOP_RELAXED|m==latest|EndOp's store of the busy flag is relaxed: the parker that reads it 0 may see the owner's caches as they were before its last operation"
  "mutant|W_park_unpark_relaxed|park_sb.pml|-DMUTANT_UNPARK_RELAXED|m==latest|the parker's unpark store is relaxed: the waiting owner reads its caches as they were before GoIdle"
  "mutant|W_park_begin_relaxed|park_sb.pml|-DMUTANT_BEGIN_RELAXED|m==latest|BeginOp's load of the park state is relaxed: it reads the unpark's 0 without synchronising, and the operation reads its caches as they were before GoIdle"
  "mutant|R6|sweep_sb.pml|-DMUTANT_R6|released==1|the sweeper does not re-check 'wanted' after its pass: a request made during it is lost and a whole page stays queued (VERIFICATION.md R6)"
  "mutant|W_ready_mark|ready_sb.pml|-DMUTANT_READY_MARK|&&counted|weak memory: MarkReady's relaxed shortcut reads a stale set bit while the adopter's pop after ClearReady misses the page (store buffering): a counted queued page without its ready bit"
  "mutant|W_ready_clear|ready_sb.pml|-DMUTANT_READY_CLEAR|&&counted|weak memory: an acq_rel ClearReady is outside the seq_cst order, so MarkReady's seq_cst check may still read the bit set: hint lost"
  "mutant|W_ready_pop|ready_sb.pml|-DMUTANT_READY_POP|&&counted|weak memory: the adopter's relaxed empty check after ClearReady misses a page given back (and re-marked) by another adopter: hint lost"
  "mutant|A_where_first|detach_armed.pml|-DMUTANT_WHERE_FIRST|incs<=1|the adopter reads where before adoptable_detach: it pairs an unarmed detach's kDetached with the 1 of a Detach in progress (after a route switch) and takes a page its owner still uses (mutual exclusion)"
  # The background reclaimer's wake-up handshake (reclaimer.pml; README.md, "reclaimer.pml").
  "verify|reclaimer|reclaimer.pml|||"
  "verify|reclaimer_3_notifiers|reclaimer.pml|-DNN=3||"
  "mutant|M_rc_clear_after_pass|reclaimer.pml|-DMUTANT_CLEAR_AFTER_PASS|SWEPT==|the reclaimer clears its notification word after the pass instead of before: a notifier that saw the word still set returns, the pass had missed its count, the reclaimer sleeps with a whole page owed"
  "mutant|M_rc_notify_first|reclaimer.pml|-DMUTANT_NOTIFY_FIRST|SWEPT==|Notify before counting the whole page: the pass it starts reads the count before it grows, and the reclaimer sleeps"
  "mutant|M_rc_wake_check_first|reclaimer.pml|-DMUTANT_WAKE_CHECK_FIRST|SWEPT==|the notifier reads 'sleeping' before its exchange of the word: it sees the reclaimer awake, the reclaimer then sleeps, and the exchange wakes nobody"
  # Per-thread caches under a concurrent double free (cache.pml; README.md, "cache.pml").
  "verify|cache|cache.pml|||"
  "verify|cache_remote_cas_strict|cache.pml|-DREMOTE_CAS -DSTRICT||"
  "mutant|C0_cache_strict|cache.pml|-DSTRICT|used>=\(1\+held\)|the remote free's canary check and store in two steps (the code before Heap::PushRemote_mt's compare-exchange): a block the owner cached or flushed meanwhile goes back to its page twice (used decremented twice, unreported); REMOTE_CAS, the code now, verifies"
  "mutant|M_cache_drain|cache.pml|-DMUTANT_DRAIN_NOCHECK|!\(held\)|a drain that does not check kOnRemote absorbs the stale remote copy of a block the owner's cache handed out: handed out twice"
  "mutant|M_cache_pop_refill|cache.pml|-DMUTANT_POP_NOCHECK -DMUTANT_REFILL_NONEMPTY|!\(held\)|a cache pop that does not check kInCache plus a refill while the cache is not empty: the page's copy and the stale cached copy are both handed out"
)

# How to print the counterexample of a failed run (pan writes <model>.pml.trail in the run dir).
replay_hint() {
  echo "    replay: cd $dir && spin $defines -t -k $pml.trail -p $MODEL_DIR/$pml"
}

passed=0
failed=0
i=0
for row in "${MODELS[@]}"; do
  IFS='|' read -r kind name pml defines expect reason <<<"$row"
  i=$((i + 1))
  dir="$WORK_ROOT/run$i-$name"
  rm -rf "$dir" && mkdir -p "$dir"
  out="$dir/pan.out"
  # shellcheck disable=SC2086  # $defines is a word list
  if ! (cd "$dir" && spin $defines -a "$MODEL_DIR/$pml" >spin.out 2>&1); then
    echo "FAIL $kind $name: spin -a failed:"; sed 's/^/    /' "$dir/spin.out"
    failed=$((failed + 1)); continue
  fi
  if ! (cd "$dir" && cc "${PAN_CFLAGS[@]}" -o pan pan.c >cc.out 2>&1); then
    echo "FAIL $kind $name: cc pan.c failed:"; sed 's/^/    /' "$dir/cc.out"
    failed=$((failed + 1)); continue
  fi
  (cd "$dir" && ./pan "${PAN_RUNFLAGS[@]}" >"$out" 2>&1)

  errors="$(sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' "$out" | head -n1)"
  states="$(sed -n 's/^ *\([0-9][0-9]*\) states, stored.*/\1/p' "$out" | head -n1)"
  secs="$(sed -n 's/^pan: elapsed time \([0-9.e+-]*\) seconds.*/\1/p' "$out" | head -n1)"
  stats="states=${states:-?}, time=${secs:-?}s"
  if [[ -z "$errors" ]]; then
    echo "FAIL $kind $name: no 'errors:' line from pan:"; sed 's/^/    /' "$out"
    failed=$((failed + 1)); continue
  fi

  if [[ "$kind" == verify ]]; then
    if [[ "$errors" == 0 ]] && ! grep -qE 'max search depth too small|Search not completed|out of memory|MEMLIM' "$out"; then
      echo "PASS verify $name ($stats)"
      passed=$((passed + 1))
    else
      echo "FAIL verify $name: errors=$errors or search incomplete ($stats):"
      grep -E 'pan:|error|assert|depth' "$out" | sed 's/^/    /'
      replay_hint
      failed=$((failed + 1))
    fi
  else
    violation="$(grep -m1 -E '^pan:[0-9]+: ' "$out" | sed 's/^pan:[0-9]*: *//')"
    if [[ "$errors" -gt 0 ]] && grep -qE "$expect" <<<"$violation"; then
      echo "PASS mutant $name caught: $reason [$violation; $stats]"
      passed=$((passed + 1))
    elif [[ "$errors" -gt 0 ]]; then
      echo "FAIL mutant $name caught for an unexpected reason: '$violation' (expected /$expect/)"
      replay_hint
      failed=$((failed + 1))
    else
      echo "FAIL mutant $name NOT caught: spin found no error ($stats)"
      failed=$((failed + 1))
    fi
  fi
done

if [[ "$OWN_WORK_ROOT" -eq 1 ]]; then
  if [[ "$failed" -eq 0 ]]; then rm -rf "$WORK_ROOT"; else echo "run directories kept in $WORK_ROOT"; fi
fi
echo "$passed passed, $failed failed"
[[ "$failed" -eq 0 && "$passed" -eq "${#MODELS[@]}" ]]
