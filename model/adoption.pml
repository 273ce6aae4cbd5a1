/*
 * adoption.pml -- a page changes owner while producers keep freeing into it.
 *
 * Heaps: H0 (page's original owner) and H1 (the adopter's heap); heap id = index of pending_head[].
 * One page (id 1; 0 = nullptr), three blocks; producer A frees blocks 1 and 2, producer B block 3.
 * The producer and drain steps are those of remote_free.pml (one xremote word per page, see there);
 * the producer reads P.owner only after winning the flag's 0->1 edge, and pushes P on that heap.
 *
 * Route P (default; future design): the adopter takes pages from a LIVE owner's pending queue.
 *   - both queues are popped with pop-all (ABA-safe; see pending_queue.pml for single-pop);
 *   - every drainer holds the page's claim, CAS(P.claim, 0 -> 1), from pop until the drain ends;
 *     "drain" = take the blocks AND merge them into the page's local free list;
 *   - the adopter, holding the claim, sets P.owner = itself BEFORE exchange(P.xremote, 0);
 *   - direct collection (CAS old -> {null, 0, old.flag}) also holds the claim and re-checks
 *     P.owner == me under it (the page may have been adopted).
 * Route S (-DROUTE_S): the owner of H0 is dead (abandoned heap, no Owner process). The adopter
 *   holds H0's exclusive claim; it drains H0's pending queue as H0's proxy, and takes a page only
 *   by CAS(P.xremote, {flag=0, rest} -> {flag=1, rest}); holding the flag it sets P.owner = H1,
 *   then exchange(P.xremote, 0). When no page names H0 and H0's queue is empty it frees H0.
 *
 * Invariants asserted (numbers of docs/protocol.md):
 *  13   at most one drainer per page at any moment (drainers[p] <= 1)
 *   6   a page is only ever pushed on / popped from its owner's queue; never on a freed heap
 *   5   never enqueued twice
 *  2,3  every block drained exactly once, remote_count matches; 12 drained lists well formed
 *   7   at quiescence: flag <=> page in its owner's queue;  8: non-empty stack => flag & queued
 *   9   after a final drain of both queues: everything empty, every block drained
 *
 * Variants (-D):
 *   (none)       Route P with per-page claim + direct collection        -> verifies
 *   ROUTE_S      Route S, abandoned H0                                  -> verifies
 *   MUTANT_M3    Route P without the per-page claim                     -> two drainers at once
 *   MUTANT_M6    Route P, adopter sets P.owner AFTER the exchange       -> page pushed on the old
 *                owner's queue (mutant M6 of docs/protocol.md; found while writing this model)
 *   MUTANT_M7    Route S, adopter takes the page without holding the flag (plain exchange)
 *                -> a producer that read the old owner pushes on the abandoned heap
 */

#ifdef MUTANT_M7
#define ROUTE_S
#endif

#define NPAGES  1
#define NBLOCKS 3
#ifndef ROUNDS
#define ROUNDS  3        /* operations per owner / adopter before it stops */
#endif

#define LIVE    0
#define REMOTE  1
#define DRAINED 2

/* ---- P.xremote ---- */
byte xflag[NPAGES + 1];
byte xhead[NPAGES + 1];
byte xcnt[NPAGES + 1];
/* ---- other page fields ---- */
byte owner[NPAGES + 1];            /* P.owner: heap id */
bit  claim[NPAGES + 1];            /* P.claim (Route P) */
byte pending_next[NPAGES + 1];
/* ---- blocks ---- */
byte bnext[NBLOCKS + 1];
byte bstate[NBLOCKS + 1];          /* ghost */
/* ---- heaps ---- */
byte pending_head[2];
bit  heap_claim[2];                /* exclusive claim on an abandoned heap (Route S) */
bit  heap_freed[2];                /* ghost: the heap struct was freed */
/* ---- ghosts ---- */
byte queued[NPAGES + 1];
byte drainers[NPAGES + 1];

#ifdef MUTANT_M3
#define claim_page(p)   skip                                       /* M3: no per-page claim */
#define unclaim_page(p) skip
#else
#define claim_page(p)   atomic { claim[p] == 0 -> claim[p] = 1 }   /* CAS(P.claim, 0, 1), spinning */
#define unclaim_page(p) claim[p] = 0                               /* store(P.claim, 0) */
#endif

inline begin_drain(p) { atomic { drainers[p]++; assert(drainers[p] <= 1) } }   /* inv 13 */
inline end_drain(p)   { drainers[p]-- }

/* Merge a privately held list of taken blocks into the page's local free list (ghost checks). */
inline absorb(taken, tcnt) {
  atomic {
    n = 0;
    do
    :: taken != 0 ->
       assert(n < NBLOCKS);                        /* inv 12 */
       assert(bstate[taken] == REMOTE);            /* inv 2/3 */
       bstate[taken] = DRAINED;
       n++;
       taken = bnext[taken]
    :: else -> break
    od;
    assert(n == tcnt);
    tcnt = 0
  }
}

/* exchange(P.xremote, 0) on a page popped from a queue: the page leaves the queue here. */
inline exchange_queued(p) {
  atomic {
    assert(queued[p] == 1); queued[p]--;
    taken = xhead[p]; tcnt = xcnt[p];
    xhead[p] = 0; xcnt[p] = 0; xflag[p] = 0
  };
  absorb(taken, tcnt)
}

/* Drain a page popped from heap `me`'s own queue, as its owner (or its Route S proxy). */
inline drain_own(p, me) {
  claim_page(p);
  begin_drain(p);
  assert(owner[p] == me);                          /* inv 6: found in its owner's queue */
  exchange_queued(p);
  end_drain(p);
  unclaim_page(p)
}

/* Route P: adopter `me` drains a page popped from another heap's queue and becomes its owner. */
inline drain_adopt(p, me) {
  claim_page(p);
  begin_drain(p);
#ifdef MUTANT_M6
  exchange_queued(p);                              /* M6: drain first ... */
  owner[p] = me;                                   /* ... then change the owner */
#else
  owner[p] = me;                                   /* P.owner = me, while the flag is still set */
  exchange_queued(p);                              /* exchange(P.xremote, 0) */
#endif
  end_drain(p);
  unclaim_page(p)
}

/* chain = exchange(pending_head[src], null); per page: next FIRST, then drain. */
inline pop_all(src, me) {
  atomic { chain = pending_head[src]; pending_head[src] = 0 };
  do
  :: chain != 0 ->
     nxt = pending_next[chain];
     if
     :: src == me -> drain_own(chain, me)
     :: else -> drain_adopt(chain, me)
     fi;
     chain = nxt
  :: else -> break
  od
}

/* Direct collection of page p by heap me, if it still owns it (re-checked under the claim). */
inline direct_collect(p, me) {
  claim_page(p);
  if
  :: owner[p] == me ->
     begin_drain(p);
     atomic { taken = xhead[p]; tcnt = xcnt[p]; xhead[p] = 0; xcnt[p] = 0 };  /* flag kept */
     absorb(taken, tcnt);
     end_drain(p)
  :: else -> skip                                  /* adopted meanwhile: not ours any more */
  fi;
  unclaim_page(p)
}

/* Producer: remote free of block b into page 1. */
inline remote_free(b) {
  do
  :: atomic { oh = xhead[1]; oc = xcnt[1]; oflag = xflag[1] };   /* old = load(P.xremote) */
     bnext[b] = oh;                                               /* b->next = old.head */
     if
     :: atomic {                                                  /* CAS(P.xremote, old, new) */
          xhead[1] == oh && xcnt[1] == oc && xflag[1] == oflag ->
          assert(bstate[b] == LIVE); bstate[b] = REMOTE;
          xhead[1] = b; xcnt[1] = oc + 1; xflag[1] = 1;
          won = (oflag == 0)
        };
        break
     :: else -> skip
     fi
  od;
  if
  :: won ->
     o = owner[1];                                 /* read P.owner only after winning */
     assert(!heap_freed[o]);                       /* inv 6: the heap still exists */
     do
     :: h = pending_head[o];
        pending_next[1] = h;
        if
        :: atomic {                                /* CAS(H.pending_head, h, P) */
             pending_head[o] == h ->
             pending_head[o] = 1;
             assert(!heap_freed[o]);
             assert(o == owner[1]);                /* inv 6: only on its owner's queue */
             queued[1]++;
             assert(queued[1] <= 1)                /* inv 5 */
           };
           break
        :: else -> skip
        fi
     od
  :: else -> skip
  fi;
  won = 0
}

proctype Producer(byte b1; byte b2) {
  byte oh, oc, oflag, h, o;
  bit won;
  remote_free(b1);
  if
  :: b2 != 0 -> remote_free(b2)
  :: else -> skip
  fi
}

/* H0's live owner (Route P only). */
proctype Owner() {
  byte r, chain, nxt, taken, tcnt, n;
  do
  :: r < ROUNDS ->
     r++;
     if
     :: pop_all(0, 0)                              /* own pending queue */
     :: direct_collect(1, 0)                       /* active page */
     fi
  :: break
  od
}

#ifndef ROUTE_S
/* Route P adopter (owner of H1). */
proctype Adopter() {
  byte r, chain, nxt, taken, tcnt, n;
  do
  :: r < ROUNDS ->
     r++;
     if
     :: pop_all(0, 1)                              /* steal: pop-all H0's queue, adopt each page */
     :: pop_all(1, 1)                              /* own pending queue */
     :: direct_collect(1, 1)                       /* collect the page if it is ours now */
     fi
  :: break
  od
}
#else
/* Route S adopter (owner of H1) working on abandoned H0. */
inline adopt_with_flag(p) {
#ifdef MUTANT_M7
  owner[p] = 1;                                    /* M7: no flag held ... */
  begin_drain(p);
  atomic { taken = xhead[p]; tcnt = xcnt[p]; xhead[p] = 0; xcnt[p] = 0; xflag[p] = 0 };
  absorb(taken, tcnt);
  end_drain(p)
#else
  atomic { oh = xhead[p]; oc = xcnt[p]; oflag = xflag[p] };     /* old = load(P.xremote) */
  if
  :: oflag == 0 ->
     if
     :: atomic { xhead[p] == oh && xcnt[p] == oc && xflag[p] == 0 -> xflag[p] = 1 }; /* CAS flag 0->1 */
        owner[p] = 1;                                /* holding the flag: nobody can enqueue P */
        begin_drain(p);
        atomic { taken = xhead[p]; tcnt = xcnt[p]; xhead[p] = 0; xcnt[p] = 0; xflag[p] = 0 }; /* exchange */
        absorb(taken, tcnt);
        end_drain(p)
     :: else -> skip                               /* CAS failed: try again in a later round */
     fi
  :: else -> skip                                  /* flag set: P is (being) queued on H0 */
  fi
#endif
}

proctype Adopter() {
  byte r, chain, nxt, taken, tcnt, n, oh, oc, oflag;
  atomic { heap_claim[0] == 0 -> heap_claim[0] = 1 };   /* exclusive claim on abandoned H0 */
  do
  :: r < ROUNDS ->
     r++;
     if
     :: pop_all(0, 0)                              /* drain H0's queue as H0's proxy */
     :: owner[1] == 0 -> adopt_with_flag(1)
     :: pop_all(1, 1)                              /* own pending queue */
     :: direct_collect(1, 1)
     :: atomic { !heap_freed[0] && owner[1] != 0 && pending_head[0] == 0 -> heap_freed[0] = 1 }
     fi
  :: break
  od;
  heap_claim[0] = 0
}
#endif

init {
  byte p, h, n, occ, other, chain, nxt, taken, tcnt, b;

  atomic {
    owner[1] = 0;
    run Producer(1, 2);
    run Producer(3, 0);
#ifndef ROUTE_S
    run Owner();
#endif
    run Adopter()
  };

  (_nr_pr == 1);                                   /* quiescence */

  atomic {
    p = 1;
    do
    :: p <= NPAGES ->
       occ = 0; other = 0; h = 0;
       do
       :: h < 2 ->
          chain = pending_head[h]; n = 0;
          do
          :: chain != 0 && n <= NPAGES ->
             if
             :: chain == p && h == owner[p] -> occ++
             :: chain == p && h != owner[p] -> other++
             :: else -> skip
             fi;
             chain = pending_next[chain]; n++
          :: else -> break
          od;
          h++
       :: else -> break
       od;
       assert(other == 0);                         /* inv 6 */
       assert(occ == queued[p]);                   /* inv 5 */
       assert(xflag[p] == (occ == 1));             /* inv 7 */
       assert(xhead[p] == 0 || (xflag[p] == 1 && occ == 1));   /* inv 8 */
       assert(claim[p] == 0 && drainers[p] == 0);
       p++
    :: else -> break
    od
  };

  /* final drain of both queues, each by its owner (H0's by its owner or proxy) */
  pop_all(0, 0);
  pop_all(1, 1);

  atomic {
    assert(pending_head[0] == 0 && pending_head[1] == 0);   /* inv 9 */
    assert(xflag[1] == 0 && xhead[1] == 0 && xcnt[1] == 0 && queued[1] == 0);
    b = 1;
    do
    :: b <= NBLOCKS -> assert(bstate[b] == DRAINED); b++
    :: else -> break
    od
  }
}
