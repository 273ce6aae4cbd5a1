/*
 * claim_sb.pml -- the abandoned-heap hand-off under weak memory: a page queued on the heap of an
 * exited thread is processed by somebody, never left on the queue (README.md, "Weak-memory
 * models").
 *
 * C++ being modelled (mf2/heap.cc QueueWonPage_mt; mf2/heap_abandon.cc TryClaim,
 * ReclaimAbandoned_mt, ReleaseClaimAndRecheck, ProcessAllPending). Heap D is abandoned (its
 * xabandoned_ is set for good and read seq_cst: left out). Locations, all atomics:
 *   HEAD    D's pending queue (0 empty, 1 = page P queued)   xpending_.head_
 *   CLAIM   D's claim                                         xclaim_
 * H, a thread that holds D's claim (an adopter in Route S step 4, or a previous freer) and is
 *     releasing it: ReleaseClaimAndRecheck: loop { CLAIM = 0 (seq_cst); if HEAD (seq_cst) is
 *     empty return; CAS CLAIM 0 -> 1 (seq_cst; failure FAIL), on failure return; process }
 * F, a remote freer that won P's 0->1 edge: push P on HEAD (seq_cst CAS), then
 *     ReclaimAbandoned_mt: CAS CLAIM 0 -> 1 (seq_cst; failure FAIL), on failure return (the
 *     holder will see P when it releases); on success process, then ReleaseClaimAndRecheck.
 * process (ProcessAllPending): pop HEAD whole (seq_cst exchange) and hand P over.
 *
 * Shape checked: store buffering between F's "push HEAD; read CLAIM" (the read of the failing
 * CAS) and H's "CLAIM = 0; read HEAD". Asserted at the end (both done): P was processed exactly
 * once and the queue is empty.
 *
 * Variants (-D):
 *   (none)                 the fixed C++ (the claim CAS fails with a seq_cst load) -> verifies
 *   MUTANT_CLAIM_CAS_FAIL  the CAS's failure order relaxed (the code before it was found):
 *                          F reads the holder's stale claim while H misses the push -> P stranded
 */

#define NT 2
#define NL 2
#define NV 2
#define HM 6
#include "weak_memory.pml"

#define HEAD  0
#define CLAIM 1

#ifdef MUTANT_CLAIM_CAS_FAIL
#define FAIL RLX
#else
#define FAIL SC
#endif

byte processed;

/* The claim holder t processes D's queue: everything on it is handed over. */
inline process(t) {
  atomic { wm_rmw(t, HEAD, SC, chain, 0) };
  if
  :: chain != 0 -> processed++
  :: else -> skip
  fi
}

/* ReleaseClaimAndRecheck by the claim holder t. */
inline release_and_recheck(t) {
  do
  :: atomic { wm_store(t, CLAIM, SC, 0) };
     atomic { wm_load(t, HEAD, SC, v) };
     if
     :: v == 0 -> break
     :: else ->
        atomic { wm_cas(t, CLAIM, SC, FAIL, 0, 1, ok) };
        if
        :: ok -> process(t)
        :: else -> break
        fi
     fi
  od
}

proctype H() {
  WM_LOCALS;
  byte v, ok, chain;
  release_and_recheck(0)
}

proctype F() {
  WM_LOCALS;
  byte v, ok, chain;
  atomic { wm_rmw(1, HEAD, SC, v, 1) };                   /* QueueWonPage_mt: push P */
  atomic { wm_cas(1, CLAIM, SC, FAIL, 0, 1, ok) };        /* ReclaimAbandoned_mt: TryClaim */
  if
  :: ok -> process(1); release_and_recheck(1)
  :: else -> skip
  fi
}

init {
  atomic {
    wm_init(HEAD, 0);
    wm_init(CLAIM, 1);  /* H holds the claim */
    run H();
    run F()
  };
  _nr_pr == 1;
  assert(processed == 1 && LATEST(HEAD) == 0)
}
