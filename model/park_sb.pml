/*
 * park_sb.pml -- the idle flush (mf2/heap.h, "The idle flush"): a parker (the background
 * reclaimer) acts as an idle owner's heap only while the owner is outside every operation, and
 * each side sees what the other wrote. Under weak memory (weak_memory.pml), with the asymmetric
 * fence pair of mf2/fence.h.
 *
 * C++ being modelled (mf2/heap.h BeginOp, EndOp; mf2/heap_adopt.cc WaitUnparked,
 * FlushIdleOwner_mt). Locations, all atomics with a history:
 *   BUSY   the owner's xbusy_ (1 inside an operation)
 *   PARK   xpark_: 0 unparked, 1 requested, 2 parked
 *   MAG    the owner's caches (plain data in C++; a relaxed location here, so that a read that
 *          misses the other side's last write is visible: it must never happen)
 * O, the owner, runs two operations: BUSY = 1 (relaxed); light fence (program order, nothing
 *     else); PARK (acquire) != 0 -> WaitUnparked: reread PARK (acquire); 1 -> CAS 1 -> 0
 *     (acquire) and go on, or read again on failure; 2 -> wait (the futex) until it reads 0. Then
 *     the operation: read MAG, write MAG + 1; then BUSY = 0 (release).
 * R, the parker, tries twice: CAS PARK 0 -> 1 (relaxed), or give up this try; heavy fence;
 *     BUSY (acquire): 1 -> CAS PARK 1 -> 0 (relaxed), next try; 0 -> CAS PARK 1 -> 2 (relaxed):
 *     on success GoIdle (read MAG, write 0), then PARK = 0 (release).
 * Ghosts: incs (who is inside the heap: owner operation or GoIdle), latest (MAG's latest value).
 * Asserted: incs <= 1 (mutual exclusion) and every read of MAG returns `latest`.
 *
 * Variants (-D): each must fail.
 *   MUTANT_NO_FENCE       no heavy fence (the parker only loads BUSY): store buffering, the
 *                         owner misses the request while the parker misses BUSY = 1
 *   MUTANT_CHECK_FIRST    the owner reads PARK before it stores BUSY = 1
 *   MUTANT_ENDOP_RELAXED  EndOp's store is relaxed: the parker reads stale caches
 *   MUTANT_UNPARK_RELAXED the unpark store is relaxed: the owner reads stale caches after it
 *   MUTANT_BEGIN_RELAXED  BeginOp's load of PARK is relaxed (as first written, found by this
 *                         model): it may read the unpark's 0 without synchronising with it, and
 *                         the operation then reads the caches as they were before GoIdle
 */

#define NT 2
#define NL 3
#define NV 3
#define HM 9
#include "weak_memory.pml"

#define BUSY 0
#define PARK 1
#define MAG  2

#ifdef MUTANT_ENDOP_RELAXED
#define ENDOP_ORD RLX
#else
#define ENDOP_ORD REL
#endif
#ifdef MUTANT_UNPARK_RELAXED
#define UNPARK_ORD RLX
#else
#define UNPARK_ORD REL
#endif
#ifdef MUTANT_BEGIN_RELAXED
#define BEGIN_ORD RLX
#else
#define BEGIN_ORD ACQ
#endif

byte incs, latest;

inline owner_op() {
#ifdef MUTANT_CHECK_FIRST
  atomic { wm_load(0, PARK, BEGIN_ORD, v) };
  atomic { wm_store(0, BUSY, RLX, 1) };
#else
  atomic { wm_store(0, BUSY, RLX, 1) };
  atomic { wm_load(0, PARK, BEGIN_ORD, v) };
#endif
  do                                                     /* WaitUnparked */
  :: v == 0 -> break
  :: v == 1 ->
     atomic { wm_cas(0, PARK, ACQ, ACQ, 1, 0, ok) };
     if
     :: ok -> break
     :: else -> atomic { wm_load(0, PARK, ACQ, v) }
     fi
  :: v == 2 -> atomic { wm_load(0, PARK, ACQ, v) }       /* the futex wait: read again */
  od;
  atomic { assert(incs == 0); incs++ };
  atomic { wm_load(0, MAG, RLX, m); assert(m == latest) };
  atomic { wm_store(0, MAG, RLX, m + 1); latest = m + 1 };
  atomic { incs-- };
  atomic { wm_store(0, BUSY, ENDOP_ORD, 0) }
}

proctype Owner() {
  WM_LOCALS;
  byte v, ok, m;
  owner_op();
  v = 0; ok = 0; m = 0;
  owner_op()
}

proctype Parker() {
  WM_LOCALS;
  byte b, ok, m, tries;
  do
  :: tries < 2 ->
     tries++;
     atomic { wm_cas(1, PARK, RLX, RLX, 0, 1, ok) };
     if
     :: ok ->
#ifndef MUTANT_NO_FENCE
        atomic { wm_heavy_fence(1, 0) };
#endif
        atomic { wm_load(1, BUSY, ACQ, b) };
        if
        :: b != 0 -> atomic { wm_cas(1, PARK, RLX, RLX, 1, 0, ok) }
        :: else ->
           atomic { wm_cas(1, PARK, RLX, RLX, 1, 2, ok) };
           if
           :: ok ->
              atomic { assert(incs == 0); incs++ };
              atomic { wm_load(1, MAG, RLX, m); assert(m == latest) };
              atomic { wm_store(1, MAG, RLX, 0); latest = 0 };
              atomic { incs-- };
              atomic { wm_store(1, PARK, UNPARK_ORD, 0) }
           :: else -> skip
           fi
        fi
     :: else -> skip
     fi;
     b = 0; ok = 0; m = 0
  :: else -> break
  od
}

init {
  atomic {
    wm_init(BUSY, 0);
    wm_init(PARK, 0);
    wm_init(MAG, 0);
    run Owner();
    run Parker()
  };
  _nr_pr == 1;
  assert(incs == 0)
}
