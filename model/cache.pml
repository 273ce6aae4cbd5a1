/*
 * cache.pml -- one block under a concurrent double free, through the owner's per-thread cache
 * (mf2/heap.h, "Double frees"; mf2/block.h, canaries). Checked by spin (run_models.sh).
 *
 * C++ being modelled (mf2/heap.h Heap::Allocate, Heap::Free; mf2/heap.cc AllocateSlow,
 * CachedBlockBad, FreeToFullCache, FlushCaches, FlushOne, ReturnBlock, FreeRemote,
 * PushRemote_mt, CollectDequeued/Collect; mf2/page.cc PopBatch, PushLocal, CollectRemote,
 * LoseLocalList, Retire):
 *   - word 1 of block p, the canary: LIVE (no canary: handed out), INCACHE, ONPAGE, ONREMOTE. A
 *     relaxed atomic: every load or store is one step, and a check and the store after it are two.
 *   - the owner's cache of p's class: nc copies of p (a cache holds a pointer once per push);
 *     the page's local free list: lp copies; the remote stack: ns copies; used (page.h): blocks
 *     handed out of the page. Block q of the same page is held by the program throughout, so a
 *     correct used() never drops below 1.
 *
 * Actors. Block p starts handed out (canary LIVE, used = 2 with q). The program frees p twice at
 * once, from the owner's thread O and from a remote thread R (a program bug):
 *   R: Free(p) from another thread (FreeRemote): load word 1; a canary -> reported, done; else
 *      store ONREMOTE (PushRemote_mt), then push p on the remote stack (Push_mt, one step). R may
 *      also not free at all (no double free: then nothing may be lost either).
 *   O: up to ROUNDS operations, each any of
 *      - the program frees its reference to p (Heap::Free, owner): load word 1; a canary ->
 *        reported; else store INCACHE and push p on the cache. (The first such free is the
 *        racing one; later ones free what O's program got back.)
 *      - allocate, cache not empty (Heap::Allocate): pop a copy; load word 1: INCACHE -> store
 *        LIVE, handed out to O's program; else dropped, reported (CachedBlockBad).
 *      - allocate, cache empty (AllocateSlow): optionally drain the remote stack first
 *        (FindPage: own queue, active page); then refill from the page (PopBatch: load word 1:
 *        ONPAGE -> store INCACHE, used + 1; else the list is lost, reported) and hand out the
 *        top at once (store LIVE).
 *      - flush the cache (FlushCaches at thread exit, under memory pressure, when the owner goes
 *        idle; FreeToFullCache): per copy, load word 1: INCACHE -> back to the page (PushLocal:
 *        store ONPAGE, used - 1); else dropped, reported (FlushOne).
 *      - drain (TakeAll, then CollectRemote): per copy taken, ONREMOTE -> PushLocal; else
 *        dropped with the rest of the list, reported.
 *      - release the page when used == 0 (PageGainedFree -> TryRelease -> Retire).
 *   At quiescence init flushes and drains once more (thread exit), then checks.
 *
 * Ghosts. `held`: whether p is handed out, in the allocator's linearisation: a free takes effect
 * at its store of a canary (R's store, or the CAS below), an allocation at its store of LIVE. A
 * free that takes effect while p is not held is the second free of a double free (`dfree`). A
 * free that takes effect after p was handed out again (R checked before O's free and the
 * re-allocation, stored after them) frees the new hand-out: no allocator can tell it from a
 * correct free of that hand-out, so it is one. `reports`: misuse reports.
 *
 * Assertions:
 *   H1  p is never handed out while it is held (never to two users at once).
 *   N1  no double free -> nothing is lost or doubled: after the final flush and drain p is held,
 *       or on the page's free list once, and used == 1 + held.
 *   STRICT only (the promises of heap.h "Double frees" and page.h "Blocks" beyond H1):
 *   R1  a double free is reported: at the second free, or when the racing copy is met (a cache
 *       pop, a flush, a drain, a refill), at the latest by the final flush and drain.
 *   A1  used() counts p out exactly while it is out: used >= 1 + held at every return of p to
 *       its page (q is held throughout), p is on the free list at most once, and the page is
 *       never released while a block of it is held, cached or on the remote stack.
 *   plus: no invalid end state.
 *
 * Variants (-D), rows of run_models.sh:
 *   (none)               the C++ as of this model; H1, N1                      -> verifies
 *   STRICT               + R1, A1                                              -> FAILS (A1):
 *                        R checks word 1 before O's free and stores ONREMOTE after it (after
 *                        O's flush, even), so p is in the cache or on the free list AND on the
 *                        stack, canary ONREMOTE: the drain accepts it and returns p to its page
 *                        a second time (used is decremented twice; unreported). In the C++ a
 *                        page is then released under a live or cached block:
 *                        stress/double_free_stress_test.cc, RacingDoubleFreeRepro (DISABLED_).
 *   REMOTE_CAS STRICT    the remote free's check and store are one compare-exchange of word 1
 *                        from the value its check saw (a failed one is reported)  -> verifies
 *   MUTANT_DRAIN_NOCHECK the drain absorbs without checking ONREMOTE           -> H1
 *   MUTANT_POP_NOCHECK + MUTANT_REFILL_NONEMPTY
 *                        a cache pop hands p out without checking INCACHE, and the slow path
 *                        refills while the cache still holds copies             -> H1
 *   Each of these two alone verifies (H1, N1): a stale cached copy is handed out unchecked only
 *   after the refill's own check of ONPAGE failed on the page's copy, and a page copy refilled
 *   beside a stale copy is met first by a checked pop. MUTANT_FLUSH_NOCHECK alone verifies too
 *   (a stale copy flushed unchecked puts p on the free list twice; the refill's check
 *   cuts at the second copy). README.md lists the state counts.
 */

#ifndef ROUNDS
#define ROUNDS 8           /* operations by O */
#endif

/* word 1 of p */
#define LIVE     0
#define INCACHE  1
#define ONPAGE   2
#define ONREMOTE 3

byte canary = LIVE;
byte nc;                 /* copies of p in O's cache */
byte lp;                 /* copies of p on the page's local free list */
byte ns;                 /* copies of p on the remote stack */
byte used = 2;           /* p and q handed out */
bit  released;
/* ---- ghosts ---- */
bit  held = 1;           /* p handed out (allocator's linearisation) */
bit  dfree;              /* a free took effect while p was not held */
byte reports;
byte oheld = 1;          /* references to p O's program holds (it believes) */
bit  rfreed;             /* R ran its free of p */

/* A free of p takes effect (its canary store). */
inline take_free() {
  if
  :: held -> held = 0
  :: else -> dfree = 1
  fi
}

/* p is handed out to O's program (its store of LIVE). */
inline hand_out() {
  assert(!held);         /* H1 */
  held = 1;
  oheld++;
  canary = LIVE
}

/* p goes back on its page's local free list (PushLocal). */
inline push_local() {
  lp++;
  used--;
#ifdef STRICT
  assert(used >= 1 + held);  /* A1: q (and p while held) still counted */
  assert(lp <= 1);
#endif
  canary = ONPAGE
}

inline flush_all() {
  do
  :: nc > 0 ->
     c1 = canary;                           /* FlushOne: load */
     if
#ifndef MUTANT_FLUSH_NOCHECK
     :: c1 == INCACHE -> nc--; push_local()  /* ReturnBlock -> PushLocal */
     :: else -> nc--; reports++              /* dropped, reported */
#else
     :: true -> nc--; push_local()
#endif
     fi
  :: else -> break
  od
}

inline drain() {
  atomic { t = ns; ns = 0 };                /* TakeAll */
  do
  :: t > 0 ->
#ifndef MUTANT_DRAIN_NOCHECK
     if
     :: canary == ONREMOTE -> t--; push_local()
     :: else -> t = 0; reports++            /* it and the rest of the list dropped */
     fi
#else
     t--; push_local()
#endif
  :: else -> break
  od
}

proctype Remote() {
  byte seen;
  if
  :: true -> skip                           /* R does not free: no double free */
  :: true ->
     rfreed = 1;
     seen = canary;                         /* FreeRemote: HasAnyCanary */
     if
     :: seen != LIVE -> reports++           /* reported at the second free */
     :: else ->
#ifdef REMOTE_CAS
        atomic {
          if
          :: canary == seen -> canary = ONREMOTE; take_free()
          :: else -> reports++; goto done    /* changed since the check: a double free */
          fi
        };
#else
        atomic { canary = ONREMOTE; take_free() };  /* PushRemote_mt: StoreCanary */
#endif
        ns++                                /* Push_mt */
     fi
  fi;
done:
  skip
}

proctype Owner() {
  byte rounds = 0;
  byte c, c1, t;
  do
  :: rounds < ROUNDS ->
     rounds++;
     if
     :: oheld > 0 ->                        /* the program frees its reference (owner) */
        oheld--;
        c = canary;
        if
        :: c != LIVE -> reports++
        :: else -> atomic { nc++; canary = INCACHE; take_free() }
        fi
     :: nc > 0 ->                           /* Allocate: pop */
        c = canary;
#ifndef MUTANT_POP_NOCHECK
        if
        :: c == INCACHE -> atomic { nc--; hand_out() }
        :: else -> nc--; reports++          /* CachedBlockBad */
        fi
#else
        atomic { nc--; hand_out() }
#endif
#ifndef MUTANT_REFILL_NONEMPTY
     :: nc == 0 ->                          /* AllocateSlow */
#else
     :: true ->
#endif
        if
        :: ns > 0 -> drain()                /* FindPage: own queue or active page first */
        :: true -> skip
        fi;
        if
        :: lp > 0 ->                        /* PopBatch, then the top handed out */
           c = canary;
           if
           :: c == ONPAGE -> atomic { lp--; used++; canary = INCACHE };
              atomic { hand_out() }
           :: else -> used = used + lp; lp = 0; reports++  /* LoseLocalList */
           fi
        :: else -> skip                     /* a new page: p is not involved */
        fi
     :: nc > 0 -> flush_all()
     :: ns > 0 -> drain()
     :: used == 0 && !released ->           /* TryRelease */
        released = 1;
#ifdef STRICT
        assert(!held && nc == 0 && ns == 0)  /* A1 (and q is held: unreachable if used is right) */
#endif
     :: true -> break
     fi
  :: else -> break
  od
}

init {
  byte c1, t;
  atomic { run Remote(); run Owner() };
  (_nr_pr == 1);
  /* quiescent: O's thread exits (caches flushed), its queue is drained */
  flush_all();
  drain();
  assert(held <= 1);
#ifdef STRICT
  assert(!dfree || reports > 0);            /* R1 */
#endif
  if
  :: !dfree && !released ->
     assert(lp + held == 1);                /* N1: not lost, not doubled */
     assert(used == 1 + held)
  :: else -> skip
  fi
}
