/*
 * ready_sb.pml -- the adoption board's ready bit under weak memory: a counted page on a pending
 * queue always has its owner's ready bit set (no lost hint; README.md, "Weak-memory models").
 *
 * C++ being modelled (mf2/adoption.cc, mf2/heap.cc, mf2/heap_adopt.cc): one owner H, one size
 * class, one page P. Locations, both atomics with a history:
 *   HEAD    H's pending queue (0 empty, 1 = P queued)          xpending_.head_
 *   READY   H's bit in the class's ready bitmap               AdoptionBoard ready word
 * Initially READY = 1 and HEAD = 0: a set bit with nothing queued is an ordinary state (the
 * owner drained its queue itself; only adopters clear bits).
 * W, the edge winner of P (QueueWonPage_mt): counts P (ghost `counted`, under P's flag), pushes
 *     it (seq_cst CAS), then MarkReady.
 * A1, A2, adopters (AdoptFromPending_mt + SweepQueue): PickReady reads READY (relaxed; a hint);
 *     if set: ClearReady (fetch_and, order CLEAR); pop (PopAll_mt: check HEAD with order POP,
 *     then exchange(0), acquire); if it got P, either take it (uncount) or decline it (a gate):
 *     give it back (seq_cst CAS) and MarkReady.
 * MarkReady: load READY (order MARK); if clear, fetch_or (release).
 *
 * Store-buffering shape: "push P; load READY" (W, or an adopter's give-back) against "clear
 * READY; load HEAD" (an adopter). If both loads miss, P stays queued and counted with the bit
 * clear: Route P never looks at H again for this class.
 *
 * Asserted at the end: P queued and counted => READY set (AdoptionBoard::CheckInvariants).
 *
 * Variants (-D):
 *   (none)               the fixed C++: MARK, CLEAR and POP seq_cst              -> verifies
 *   MUTANT_READY_MARK    MarkReady's relaxed shortcut load (before issue 10)     -> hint lost
 *   MUTANT_READY_CLEAR   ClearReady acq_rel (ditto)                              -> hint lost
 *   MUTANT_READY_POP     PopAll's relaxed empty check (ditto)                    -> hint lost
 */

#define NT 3
#define NL 2
#define NV 2
#define HM 8
#include "weak_memory.pml"

#define HEAD  0
#define READY 1

#ifdef MUTANT_READY_MARK
#define MARK RLX
#else
#define MARK SC
#endif
#ifdef MUTANT_READY_CLEAR
#define CLEAR ACQREL
#else
#define CLEAR SC
#endif
#ifdef MUTANT_READY_POP
#define POP RLX
#else
#define POP SC
#endif

bit counted;                                    /* ghost: P counted as adoptable */
byte taken;                                     /* ghost: adoptions of P */

/* -DTRACE: replays (spin -DTRACE -t) print the protocol's steps. */
#ifdef TRACE
#define TR(x) x
#else
#define TR(x) skip
#endif

/* AdoptionBoard::MarkReady by thread t. */
inline mark_ready(t) {
  atomic { wm_load(t, READY, MARK, v) };
  TR(printf("%d: MarkReady reads READY = %d\n", t, v));
  if
  :: v == 0 -> atomic { wm_rmw(t, READY, REL, v, 1) }
  :: else -> skip                               /* already set: skip the RMW */
  fi
}

proctype W() {
  WM_LOCALS;
  byte v;
  counted = 1;                                  /* CountQueued, under P's flag */
  atomic { wm_rmw(0, HEAD, SC, v, v | 1) };     /* owner->xpending_.Push_mt(P) */
  TR(printf("0: W pushed P\n"));
  mark_ready(0)
}

proctype A(byte t) {
  WM_LOCALS;
  byte v, chain;
  atomic { wm_load(t, READY, RLX, v) };         /* PickReady */
  if
  :: v != 0 ->
     atomic { wm_rmw(t, READY, CLEAR, v, 0) };  /* ClearReady, before the pop */
     TR(printf("%d: ClearReady\n", t));
     atomic { wm_load(t, HEAD, POP, v) };       /* PopAll_mt: the empty check */
     TR(printf("%d: pop check HEAD = %d\n", t, v));
     if
     :: v != 0 ->
        atomic { wm_rmw(t, HEAD, ACQ, chain, 0) };
        if
        :: chain != 0 ->                        /* we hold P's flag */
           if
           :: atomic { counted = 0; taken++; assert(taken == 1) }  /* adopted */
           :: atomic { wm_rmw(t, HEAD, SC, v, v | chain) };        /* declined: given back */
              TR(printf("%d: gives P back\n", t));
              mark_ready(t)
           fi
        :: else -> skip
        fi
     :: else -> skip
     fi
  :: else -> skip                               /* no hint: nothing to do */
  fi
}

init {
  atomic {
    wm_init(HEAD, 0);
    wm_init(READY, 1);
    run W();
    run A(1);
    run A(2)
  };
  _nr_pr == 1;
  assert(!(LATEST(HEAD) != 0 && counted) || LATEST(READY) == 1)
}
