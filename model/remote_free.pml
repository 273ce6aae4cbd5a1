/*
 * remote_free.pml -- MF2's remote-free protocol: producers free blocks into pages they do not own,
 * one owner drains. Checked exhaustively by spin (see run_models.sh).
 *
 * C++ being modelled (one heap H, its owner thread, two non-owner producer threads):
 *   P.xremote : ONE 64-bit atomic word = { bit 0: in_remote_pending flag,
 *                                          bits 1..47: head of the remote-free Treiber stack,
 *                                          bits 48..63: remote_count }.
 *               Modelled as xflag[p], xhead[p], xcnt[p]; every access to the word is ONE atomic
 *               step that reads or writes all three together.
 *   H.pending_head / P.pending_next : MPSC Treiber stack of pages waiting to be drained.
 *
 * Sizes: 2 pages (page 1 = the owner's active page), 3 blocks (blocks 1,2 in page 1, block 3 in
 * page 2). Producer A frees block 3 then block 1; producer B frees block 2.
 * Block/page id 0 = nullptr.
 *
 * Invariants asserted (numbers of docs/protocol.md):
 *   2,3  every block reaches the remote stack once and is drained exactly once (bstate, drained[]);
 *        the remote_count field equals the drained list length
 *   5    a page is never enqueued twice (queued[p] in {0,1})
 *  11    a page is released only when xremote == 0, and then nobody touches it again
 *  12    drained lists are well formed (blocks of that page, no cycles, length <= NBLOCKS)
 *   7    at quiescence: flag set  <=>  page found in the pending queue (once)
 *   8    at quiescence: non-empty remote stack => flag set and page queued (lost wake-up)
 *   9    after a final owner drain: queue, stacks, flags, counters all empty; every block drained
 *   plus: no invalid end state (every process terminates).
 *
 * Variants (-D at `spin -a` time); exactly one model, one change each:
 *   (none)             the protocol as implemented: drain = exchange(P.xremote, 0)    -> verifies
 *   SPLIT_FLAG_FIRST   drain as two steps: clear flag, THEN take the stack           -> verifies
 *   MUTANT_M1          drain as two steps: take the stack, THEN clear the flag       -> stranded block
 *   MUTANT_M2          no flag: enqueue on the stack's empty->non-empty edge         -> enqueued twice
 *   MUTANT_M5          chain walk drains a page BEFORE reading its pending_next      -> chain cut
 *   MUTANT_M8          release when the remote stack is empty, ignoring the flag     -> released page
 *                      still queued (mutant M8 of docs/protocol.md; invariant 11)
 */

#define NPAGES  2
#define NBLOCKS 3
#ifndef OWNER_ROUNDS
#define OWNER_ROUNDS 4          /* owner operations before it stops (plus the final drain) */
#endif

/* block states (ghost) */
#define LIVE    0   /* held by the producer that will free it */
#define REMOTE  1   /* on its page's remote stack */
#define DRAINED 2   /* taken by the owner */

/* ---- P.xremote, one word per page ---- */
byte xflag[NPAGES + 1];
byte xhead[NPAGES + 1];
byte xcnt[NPAGES + 1];
/* ---- blocks ---- */
byte bnext[NBLOCKS + 1];           /* block->next inside a remote stack */
byte bpage[NBLOCKS + 1];           /* page holding the block (constant) */
byte bstate[NBLOCKS + 1];          /* ghost */
/* ---- heap H's pending queue ---- */
byte pending_head;
byte pending_next[NPAGES + 1];
/* ---- ghosts ---- */
byte queued[NPAGES + 1];           /* debug enqueue counter: 0->1 on enqueue, 1->0 on dequeue */
byte drained[NPAGES + 1];          /* blocks of the page drained so far */
byte nblocks[NPAGES + 1];          /* blocks the page holds (constant) */
bit  released[NPAGES + 1];         /* the owner released the page (free / reusable) */

/* Move a privately held list of taken blocks into the owner's local free list (ghost checks). */
inline absorb(p, taken, tcnt) {
  atomic {
    n = 0;
    do
    :: taken != 0 ->
       assert(n < NBLOCKS);                        /* inv 12: no cycle */
       assert(bpage[taken] == p);                  /* inv 12: node inside the page */
       assert(bstate[taken] == REMOTE);            /* inv 2/3: drained exactly once */
       bstate[taken] = DRAINED;
       drained[p]++;
       n++;
       taken = bnext[taken]
    :: else -> break
    od;
    assert(n == tcnt);                             /* remote_count matches the list */
    tcnt = 0
  }
}

/* Owner step a (per page of a popped chain): drain P = exchange(P.xremote, 0). */
inline drain_queued(p) {
#if defined(MUTANT_M1)
  /* M1: take the stack first (head=0,count=0, flag kept) ... */
  atomic { assert(!released[p]); taken = xhead[p]; tcnt = xcnt[p]; xhead[p] = 0; xcnt[p] = 0 };
  /* ... and clear the flag in a second, separate step */
  atomic { assert(queued[p] == 1); queued[p]--; xflag[p] = 0 };
#elif defined(SPLIT_FLAG_FIRST)
  /* clear the flag first (a seq_cst exchange in C++) ... */
  atomic { assert(!released[p]); assert(queued[p] == 1); queued[p]--; xflag[p] = 0 };
  /* ... then take the whole stack */
  atomic { taken = xhead[p]; tcnt = xcnt[p]; xhead[p] = 0; xcnt[p] = 0 };
#else
  /* exchange(P.xremote, 0): all blocks and the flag in ONE atomic op */
  atomic {
    assert(!released[p]);
    assert(queued[p] == 1); queued[p]--;           /* inv 5: the page leaves the queue here */
    taken = xhead[p]; tcnt = xcnt[p];
    xhead[p] = 0; xcnt[p] = 0; xflag[p] = 0
  };
#endif
  absorb(p, taken, tcnt)
}

/* Owner step a: chain = exchange(H.pending_head, null); walk it. */
inline pop_all_and_drain() {
  atomic { chain = pending_head; pending_head = 0 };
  do
  :: chain != 0 ->
#ifdef MUTANT_M5
     drain_queued(chain);                          /* M5: drain (clear flag) first ... */
     nxt = pending_next[chain];                    /* ... then read next: may be overwritten */
#else
     nxt = pending_next[chain];                    /* FIRST next = P.pending_next */
     drain_queued(chain);                          /* THEN exchange(P.xremote, 0) */
#endif
     chain = nxt
  :: else -> break
  od
}

/* Owner step b: collect the active page's remote stack without dequeuing it:
 * CAS loop old -> {head=null, count=0, flag=old.flag}. Only the winning CAS has an effect, so the
 * loop is one atomic read-modify-write of the word. */
inline direct_collect(p) {
  atomic { assert(!released[p]); taken = xhead[p]; tcnt = xcnt[p]; xhead[p] = 0; xcnt[p] = 0 };
  absorb(p, taken, tcnt)
}

/* Owner step c: release the page if xremote == 0 and no block of it is live (all drained).
 * Used as a guard: the option is only enabled when the page may be released. */
inline release_if_empty(p) {
  atomic {
#ifdef MUTANT_M8
    !released[p] && xhead[p] == 0 && xcnt[p] == 0 && drained[p] == nblocks[p] ->   /* M8: flag ignored */
#else
    !released[p] && xflag[p] == 0 && xhead[p] == 0 && xcnt[p] == 0 && drained[p] == nblocks[p] ->
#endif
    assert(queued[p] == 0);                        /* inv 11: never released while queued */
    released[p] = 1
  }
}

/* Producer: remote free of block b into its page (the producer does not own the page). */
inline remote_free(b) {
  p = bpage[b];
  /* step 1: CAS loop on P.xremote */
  do
  :: atomic { oh = xhead[p]; oc = xcnt[p]; oflag = xflag[p] };   /* old = load(P.xremote) */
     bnext[b] = oh;                                            /* b->next = old.head */
     if
     :: atomic {                                               /* CAS(P.xremote, old, new) */
          xhead[p] == oh && xcnt[p] == oc && xflag[p] == oflag ->
          assert(!released[p]);                                /* inv 11 */
          assert(bstate[b] == LIVE);                           /* inv 3: freed once */
          bstate[b] = REMOTE;
          xhead[p] = b; xcnt[p] = oc + 1;
#ifdef MUTANT_M2
          won = (oh == 0)                                      /* M2: empty->non-empty edge */
#else
          xflag[p] = 1;
          won = (oflag == 0)                                      /* won the flag's 0->1 edge */
#endif
        };
        break
     :: else -> skip                                           /* CAS failed: retry */
     fi
  od;
  /* step 2: only the winner enqueues P on P.owner's pending queue (one heap here) */
  if
  :: won ->
     do
     :: h = pending_head;                                      /* h = H.pending_head */
        pending_next[p] = h;                                   /* P.pending_next = h */
        if
        :: atomic {                                            /* CAS(H.pending_head, h, P) */
             pending_head == h ->
             pending_head = p;
             assert(!released[p]);                             /* inv 11 */
             queued[p]++;
             assert(queued[p] <= 1)                            /* inv 5: never enqueued twice */
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
  byte p, oh, oc, oflag, h;
  bit won;
  remote_free(b1);
  if
  :: b2 != 0 -> remote_free(b2)
  :: else -> skip
  fi
}

proctype Owner() {
  byte chain, nxt, taken, tcnt, n, r;
  do
  :: r < OWNER_ROUNDS ->
     r++;
     if
     :: pop_all_and_drain()
     :: !released[1] -> direct_collect(1)          /* page 1 is the active page until released */
     :: release_if_empty(1)
     :: release_if_empty(2)
     fi
  :: break                                         /* the owner may stop at any time */
  od
}

/* Occurrences of page p in the pending queue (bounded walk: a cycle shows up as a count > 1). */
inline count_in_queue(p, occ) {
  atomic {
    occ = 0; h = pending_head; n = 0;
    do
    :: h != 0 && n <= NPAGES -> if :: h == p -> occ++ :: else -> skip fi; h = pending_next[h]; n++
    :: else -> break
    od
  }
}

init {
  byte chain, nxt, taken, tcnt, n, h, p, occ, b;

  atomic {
    bpage[1] = 1; bpage[2] = 1; bpage[3] = 2;
    nblocks[1] = 2; nblocks[2] = 1;
    run Producer(3, 1);
    run Producer(2, 0);
    run Owner()
  };

  (_nr_pr == 1);                                   /* quiescence: every other process ended */

  atomic {
    p = 1;
    do
    :: p <= NPAGES ->
       count_in_queue(p, occ);
       assert(occ == queued[p]);                   /* inv 5: ghost counter matches the queue */
#ifndef MUTANT_M2
       assert(xflag[p] == (occ == 1));             /* inv 7: flag <=> queued */
       assert(xhead[p] == 0 || (xflag[p] == 1 && occ == 1));   /* inv 8: no lost wake-up */
#else
       assert(xhead[p] == 0 || occ == 1);          /* inv 8 without a flag */
#endif
       p++
    :: else -> break
    od
  };

  /* final owner drain */
  pop_all_and_drain();

  atomic {
    assert(pending_head == 0);                     /* inv 9: everything empty */
    p = 1;
    do
    :: p <= NPAGES ->
       assert(xflag[p] == 0 && xhead[p] == 0 && xcnt[p] == 0 && queued[p] == 0);
       assert(drained[p] == nblocks[p]);
       p++
    :: else -> break
    od;
    b = 1;
    do
    :: b <= NBLOCKS -> assert(bstate[b] == DRAINED); b++   /* inv 2: no remote free lost */
    :: else -> break
    od
  }
}
