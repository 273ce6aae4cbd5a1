/*
 * sweep_sb.pml -- idle reclamation under weak memory: a page of an idle owner that comes back
 * whole is released by some sweep, never left queued (README.md, "Weak-memory models").
 *
 * C++ being modelled (mf2/heap.cc, mf2/heap_adopt.cc; owner H idle and never draining, one
 * page P of capacity 2 detached, reclaim_batch 1). Locations, all atomics:
 *   HEAD      H's pending queue (0 empty, 1 = P queued)    xpending_.head_
 *   CNT       H's count of pages that came back whole       xwhole_unswept_
 *   RW        P's remote-stack block count (flag implicit) P.xremote_
 *   WANTED    another sweep pass is owed                     xsweep_wanted_
 *   SWEEPING  one sweeper at a time                          xsweeping_
 * W, the edge winner of P (PushRemote_mt + QueueWonPage_mt + FreeRemote):
 *     RW += 1 (acq_rel; wins the flag); HEAD push P (seq_cst CAS); if CNT (seq_cst) >= 1: reclaim
 * C, the completer (its push makes the page whole):
 *     RW += 1 (acq_rel; count == capacity); CNT += 1 (seq_cst); if CNT (seq_cst) >= 1: reclaim
 * S, a third thread, either
 *   - a sweeper started by another page's completion: reclaim, or
 *   - a Route P / cda adopter (AdoptFromPending_mt): pop HEAD, decline P (a gate), give it back
 *     (seq_cst CAS), then if CNT (seq_cst) >= 1: reclaim.
 * reclaim (ReclaimIdleOwner_mt):
 *     exchange WANTED 1 (seq_cst); loop { CAS SWEEPING 0 -> 1 (seq_cst; failure order FAIL), on
 *     failure return; exchange WANTED 0; sweep; SWEEPING = 0; if WANTED (seq_cst) == 0 return }
 * sweep (SweepIdleOwner_mt, SweepQueue): pop = PendingQueue::PopAll_mt: check HEAD (order POP),
 *     if non-empty exchange(0) (acquire); for P: if RW (relaxed Peek) == capacity, take it over
 *     (TakeAll: RW exchange 0, acq_rel; CNT -= 1, seq_cst) and release it; else give it back.
 *
 * Shapes checked: store buffering between C's "CNT += 1; check HEAD" and W's (or S's give-back)
 * "push HEAD; read CNT", and between a reclaimer's "WANTED = 1; CAS SWEEPING" and the sweeper's
 * "SWEEPING = 0; read WANTED"; and message passing from a requester (its push that completed P,
 * then WANTED = 1) to the sweeper that takes the request over (WANTED = 0, then Peek of P).
 *
 * Asserted at the end (every thread done): P was released exactly once, the queue is empty and
 * CNT is 0 (an idle owner keeps no page that came back whole when reclaim_batch is 1).
 *
 * Variants (-D):
 *   (none)                  the fixed C++ (seq_cst pop check, seq_cst CAS failure)    -> verifies
 *   MUTANT_SWEEP_POP        PopAll's relaxed empty check (the code before issue 10)   -> P stranded
 *   MUTANT_SWEEP_CAS_FAIL   CAS of SWEEPING with a relaxed failure order (ditto)      -> P stranded
 *   MUTANT_SWEEP_WANTED_STORE  plain seq_cst stores to WANTED (ditto): the sweeper's
 *                           WANTED = 0 overwrites a request without acquiring it, its relaxed
 *                           Peek reads P's count stale, it gives P back, nobody sweeps again
 *                                                                                     -> P stranded
 *   MUTANT_R6               the sweeper does not re-check WANTED (VERIFICATION.md R6) -> P stranded
 */

#define NT 3
#define NL 5
#define HM 12
#define HEAD     0                              /* locations with a history (weak loads) */
#define RW       1
#define CNT      3                              /* seq_cst only */
#define WANTED   4                              /* seq_cst only */
#ifdef MUTANT_SWEEP_CAS_FAIL
#define NV 3                                    /* a failed CAS is a relaxed load */
#define SWEEPING 2
#else
#define NV 2
#define SWEEPING 2                              /* seq_cst only */
#endif
#include "weak_memory.pml"

#define CAP   2
#define BATCH 1

#ifdef MUTANT_SWEEP_POP
#define POP RLX
#else
#define POP SC
#endif
/* Writes of WANTED: exchanges (every write a read-modify-write, so a sweeper's exchange(0) or
   re-check reads from a release sequence holding every request: it sees what each requester
   did before), or, before issue 10, plain stores. */
#ifdef MUTANT_SWEEP_WANTED_STORE
#define WANT(t, v) wm_store(t, WANTED, SC, v)
#else
#define WANT(t, v) wm_rmw(t, WANTED, SC, wm_old, v)
#endif
#ifdef MUTANT_SWEEP_CAS_FAIL
#define FAIL RLX
#else
#define FAIL SC
#endif

byte released;                                  /* ghost: P given back to the page source */

/* -DTRACE: replays (spin -DTRACE -t) print the protocol's steps. */
#ifdef TRACE
#define TR(x) x
#else
#define TR(x) skip
#endif

/* SweepIdleOwner_mt(H) by thread t. */
inline sweep(t) {
  atomic { wm_load(t, HEAD, POP, v) };          /* PopAll_mt: the empty check */
  TR(printf("%d: sweep check HEAD = %d\n", t, v));
  if
  :: v != 0 ->
     atomic { wm_rmw(t, HEAD, ACQ, chain, 0) }; /* exchange(nullptr, acquire) */
     TR(printf("%d: sweep pop -> %d\n", t, chain));
     if
     :: chain != 0 ->                           /* we hold P's flag */
        atomic { wm_load(t, RW, RLX, v) };      /* remote().Peek().count() */
        TR(printf("%d: sweep peek RW = %d\n", t, v));
        if
        :: v == CAP ->                          /* AdoptPopped_mt, TryRelease */
           atomic { wm_rmw(t, RW, ACQREL, v, 0) };
           assert(v == CAP);
           atomic { wm_rmw(t, CNT, SC, v, v - 1) };
           atomic { released++; assert(released == 1) }
        :: else ->                              /* given back: PushChain_mt */
           atomic { wm_rmw(t, HEAD, SC, v, v | chain) };
           TR(printf("%d: sweep gives P back\n", t))
        fi
     :: else -> skip
     fi
  :: else -> skip
  fi
}

/* ReclaimIdleOwner_mt(H) by thread t (H is idle). */
inline reclaim(t) {
  atomic { WANT(t, 1) };
  TR(printf("%d: reclaim: WANTED = 1\n", t));
  do
  :: atomic { wm_cas(t, SWEEPING, SC, FAIL, 0, 1, ok) };
     TR(printf("%d: CAS SWEEPING -> %d\n", t, ok));
     if
     :: !ok -> break                            /* the sweeper re-checks WANTED */
     :: else -> skip
     fi;
     atomic { WANT(t, 0) };
     sweep(t);
     atomic { wm_store(t, SWEEPING, SC, 0) };
#ifdef MUTANT_R6
     break
#else
     atomic { wm_load(t, WANTED, SC, v) };
     TR(printf("%d: re-check WANTED = %d\n", t, v));
     if
     :: v == 0 -> break
     :: else -> skip
     fi
#endif
  od
}

proctype W() {
  WM_LOCALS;
  byte v, chain;
  bit ok;
  atomic { wm_rmw(0, RW, ACQREL, v, v + 1) };   /* first block of P: wins the flag */
  assert(v == 0);
  atomic { wm_rmw(0, HEAD, SC, v, v | 1) };     /* QueueWonPage_mt: push P */
  TR(printf("0: W pushed P\n"));
  atomic { wm_load(0, CNT, SC, v) };            /* FreeRemote: won, so re-read the count */
  TR(printf("0: W reads CNT = %d\n", v));
  if
  :: v >= BATCH -> reclaim(0)
  :: else -> skip
  fi
}

proctype C() {
  WM_LOCALS;
  byte v, chain;
  bit ok;
  atomic { LATEST(RW) == 1 -> wm_rmw(1, RW, ACQREL, v, v + 1) };  /* the last block of P */
  assert(v + 1 == CAP);                         /* count_after == capacity: completed */
  atomic { wm_rmw(1, CNT, SC, v, v + 1) };
  TR(printf("1: C completed P, CNT was %d\n", v));
  atomic { wm_load(1, CNT, SC, v) };
  TR(printf("1: C reads CNT = %d\n", v));
  if
  :: v >= BATCH -> reclaim(1)
  :: else -> skip
  fi
}

proctype S() {
  WM_LOCALS;
  byte v, chain;
  bit ok;
  if
  :: true -> reclaim(2)                         /* a sweep started by another completion */
  :: atomic { wm_load(2, HEAD, POP, v) };       /* an adopter: SweepQueue's pop ... */
     if
     :: v != 0 ->
        atomic { wm_rmw(2, HEAD, ACQ, chain, 0) };
        if
        :: chain != 0 -> atomic { wm_rmw(2, HEAD, SC, v, v | chain) }  /* ... P declined */
        :: else -> skip
        fi
     :: else -> skip
     fi;
     atomic { wm_load(2, CNT, SC, v) };         /* AdoptFromPending_mt's re-check */
     if
     :: v >= BATCH -> reclaim(2)
     :: else -> skip
     fi
  fi
}

init {
  atomic {
    wm_init(HEAD, 0);
    wm_init(CNT, 0);
    wm_init(RW, 0);
    wm_init(WANTED, 0);
    wm_init(SWEEPING, 0);
    run W();
    run C();
    run S()
  };
  _nr_pr == 1;
  assert(released == 1 && LATEST(HEAD) == 0 && LATEST(CNT) == 0)
}
