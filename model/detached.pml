/*
 * detached.pml -- detached pages: a full page on none of its owner's lists belongs to whoever
 * holds its in_remote_pending flag (mf2/page.h, "Detached pages"). Checked by spin (run_models.sh).
 *
 * C++ being modelled (mf2/heap.h Heap::Free, mf2/heap.cc FreeDetached, FreeRemote, QueueWonPage_mt,
 * CollectDequeued, FilePage, PageGainedFree, TryRelease, SweepQueue, AdoptFromPending_mt,
 * ReclaimIdleOwner_mt, AdoptHeld_mt; mf2/remote_stack.h Push_mt, TakeAll, TryAcquireFlag):
 *   - P.xwhere: kNowhere | kActive | kPartial | kDetached (atomic; every load/store one step).
 *   - P.xremote (flag | head | count, one word) = xflag, xhead, xcnt: every access one atomic step.
 *     Push_mt is a load, then a CAS step (retried). TakeAll = exchange(0). TryAcquireFlag (a CAS
 *     loop that gives up when the flag is set) has one effect, flag 0 -> 1, so it is one step.
 *   - Owner-only page state: the local free list (lfree, linked by bnext), used, and the owner's
 *     lists (onpartial[h], isactive[h]: whether the page is on heap h's partial list / active).
 *
 * Actors. Heap H (id 0) is the page's owner at the start, run by thread O; heap A (id 1) is run by
 * thread A; thread P is a producer. One page (id 1; 0 = nullptr), NB blocks, all live, page full,
 * kDetached, owned by H, flag clear, on no queue.
 *   P: frees blocks 2..NB remotely (Push_mt; the edge winner reads P.owner under the flag and
 *      queues the page on that heap).
 *   O: frees block 1 with Heap::Free (load where, THEN load owner, two steps): owner == me and
 *      where == kDetached -> FreeDetached (TryAcquireFlag; on failure a remote free; on success
 *      re-read owner and where: changed -> push the block remotely and queue the page on its
 *      current owner as its flag holder; unchanged -> local push, PartialPush, TakeAll, absorb).
 *      owner == me otherwise -> local push; owner != me -> remote free. It also drains its own
 *      queue up to ROUNDS_O times (pop-all; CollectDequeued: kDetached -> kNowhere, TakeAll,
 *      absorb; FilePage: partial list, kept/released if empty, or detached again if full).
 *      O does not allocate: FilePage never hands the page back for a class (as ProcessAllPending,
 *      FilePage(page, 0)), so the page does not become O's active page again.
 *   A: up to ROUNDS_A operations, each any of
 *      - sweep H's queue (SweepQueue: pop-all; the page is on H's queue so it holds its flag):
 *        if where (acquire) == kDetached it may adopt it (AdoptHeld_mt: owner = A, where =
 *        kNowhere; TakeAll; absorb; SetActive), or reclaim it when its remote count == capacity
 *        (ReclaimIdleOwner_mt: take over, TakeAll, absorb, release); otherwise (not detached, or
 *        a Route P gate says no) it pushes the page back on H's queue with one CAS;
 *      - drain its own queue (same code as O);
 *      - collect its active page directly (CollectActive: TakeBlocksKeepFlag, the flag stays);
 *      - allocate a block from the page if it is A's active or partial page (SetActive + Pop);
 *      - free a block it allocated (Heap::Free, as O);
 *      - replace its active page: a full one is detached (the release store that is the owner's
 *        last touch), one with free blocks goes to the partial list (PageGainedFree).
 *      At the end A frees every block it still holds.
 *   The reclaimer of the C++ is the producer whose push made count == capacity; here thread A
 *   plays it (same steps; any timing after that push is possible for A too).
 *   A queue holds at most this one page, so a push is one step (its CAS cannot fail: no other
 *   page can be pushed between the load and the CAS) and pending_next is not modelled
 *   (multi-page queues: pending_queue.pml, remote_free.pml).
 *
 * Assertions:
 *   ME  mutual exclusion on owner-only page state: incs (threads inside a page-local critical
 *       section: local free-list push/pop, absorb, where stores, partial/active links) <= 1.
 *       The detach store is the exit of a section, in the same step (the last touch).
 *   BA  block accounting: every block is freed once (LIVE -> REMOTE or LIVE -> FREE), absorbed
 *       once (REMOTE -> FREE, count field == list length); after the final drain at quiescence
 *       every block is FREE and in the local free list exactly once, used == 0.
 *   F   only the flag holder (ghost fholder) runs TakeAll and queues the page; an edge winner
 *       had no holder before it.
 *   OC  the owner changes only while the changer holds the flag.
 *   5/6 the page is queued at most once, only on its owner's queue, and is found only there.
 *   7,8 at quiescence: flag <=> queued; non-empty remote stack => flag.
 *  11   a released page is not touched again, and is released only with xremote == 0.
 *   L   list consistency at quiescence: kDetached => no free block; on h's partial list <=>
 *       kPartial and owner == h; h's active page <=> kActive and owner == h.
 *   plus: no invalid end state (every process terminates).
 *
 * Variants (-D):
 *   (none)     the protocol as implemented                                        -> verifies
 *   MUTANT_MA  Free into an own kDetached page without the flag: local push, then
 *              PartialPush like any page that gained a free block                 -> ME
 *   MUTANT_MB  FreeDetached does not re-check owner/where after taking the flag   -> L (the old
 *              owner links the adopter's page on its own partial list; ME is reachable too)
 *   MUTANT_MC  the adopter stores where = kNowhere BEFORE P.owner = A             -> ME
 *   MUTANT_MD  the owner's drain stores kNowhere only AFTER TakeAll (the page is still
 *              kDetached while the flag is clear)                                 -> ME
 */

#ifndef NB
#define NB 3                 /* blocks in the page: 1 freed by O, 2..NB by P */
#endif
#ifndef ROUNDS_O
#define ROUNDS_O 2           /* own-queue drains by O */
#endif
#ifndef ROUNDS_A
#define ROUNDS_A 4           /* operations by A */
#endif

/* heaps */
#define H  0
#define HA 1
/* P.xwhere */
#define NOWHERE  0
#define ACTIVE   1
#define PARTIAL  2
#define DETACHED 3
/* ghost: who holds the flag */
#define T_NONE 0
#define T_O    1
#define T_A    2
#define T_P    3
#define T_Q    4             /* the page is on a queue: the popper inherits the flag */
/* ghost: block states */
#define LIVE   0             /* handed out; its holder will free it */
#define REMOTE 1             /* on the remote stack (or taken by TakeAll, not yet absorbed) */
#define FREE   2             /* on the local free list */

/* ---- the page ---- */
byte where = DETACHED;       /* P.xwhere */
byte owner = H;              /* P.xowner */
bit  xflag;                  /* P.xremote */
byte xhead;
byte xcnt;
byte lfree;                  /* owner-only: local free list head */
byte used = NB;              /* owner-only */
byte bnext[NB + 1];          /* block link: remote stack or local free list */
/* ---- heaps ---- */
bit  onpartial[2];           /* page on heap h's partial list (owner-only) */
bit  isactive[2];            /* page is heap h's active page (owner-only) */
byte pcount[2];              /* xpage_count_ */
byte qhead[2];               /* pending queue of heap h: 0 or the page */
/* ---- ghosts ---- */
byte bstate[NB + 1];
byte queued;                 /* debug_queued */
byte fholder = T_NONE;       /* flag holder */
byte incs;                   /* threads in a page-local critical section */
bit  released;               /* the page went back to the page source */

#define CS_ENTER  incs++; assert(incs <= 1); assert(!released)
#define CS_EXIT   incs--

/* PushLocal: owner-only. */
inline push_local(b) {
  assert(bstate[b] == LIVE);
  bstate[b] = FREE;
  bnext[b] = lfree;
  lfree = b;
  used--
}

/* CollectRemote of a privately held list (taken, tcnt) into the local free list. Owner-only. */
inline absorb() {
  atomic {
    n = 0;
    do
    :: taken != 0 ->
       assert(n < NB);                              /* BA: no cycle */
       assert(bstate[taken] == REMOTE);             /* BA: absorbed once */
       bstate[taken] = FREE;
       nx = bnext[taken];
       bnext[taken] = lfree; lfree = taken; used--;
       n++;
       taken = nx
    :: else -> break
    od;
    assert(n == tcnt);                              /* BA: count field == list length */
    tcnt = 0
  }
}

/* TakeAll = exchange(P.xremote, 0), by the flag holder; then Collect (owner-only). */
inline take_all_absorb(me) {
  atomic {
    assert(!released);
    assert(xflag == 1 && fholder == me);          /* F: only the flag holder takes all */
    taken = xhead; tcnt = xcnt;
    xhead = 0; xcnt = 0; xflag = 0; fholder = T_NONE
  };
  absorb()
}

/* Push_mt: load, then CAS; won = this push set the flag. */
inline push_mt(b, me) {
  do
  :: atomic { oh = xhead; oc = xcnt; ofl = xflag };
     if
     :: atomic {
          xhead == oh && xcnt == oc && xflag == ofl ->
          assert(!released);                        /* 11 */
          assert(bstate[b] == LIVE);                /* BA: freed once */
          bstate[b] = REMOTE;
          bnext[b] = oh;                            /* StoreNext (private until the CAS) */
          xhead = b; xcnt = oc + 1; xflag = 1;
          won = (ofl == 0);
          if
          :: won -> assert(fholder == T_NONE); fholder = me
          :: else -> skip
          fi
        };
        break
     :: else -> skip
     fi
  od
}

/* QueueWonPage_mt: the flag holder reads P.owner now and pushes the page on that heap's queue. */
inline queue_won(me) {
  assert(xflag == 1 && fholder == me);              /* F */
  o = owner;                                        /* owner_mt() */
  atomic {
    assert(!released);                              /* 11 */
    assert(o == owner);                             /* 6: only on its owner's queue */
    assert(qhead[0] == 0 && qhead[1] == 0);         /* 6: on at most one queue */
    qhead[o] = 1;
    queued++;
    assert(queued <= 1);                            /* 5 */
    fholder = T_Q
  }
}

/* FreeRemote: push; the edge winner queues the page. */
inline free_remote(b, me) {
  push_mt(b, me);
  if
  :: won -> queue_won(me)
  :: else -> skip
  fi;
  won = 0
}

/* pop-all of heap h's queue by thread me: chain = the page or 0. */
inline pop_all(h, me) {
  atomic {
    chain = qhead[h];
    qhead[h] = 0;
    if
    :: chain != 0 ->
       assert(xflag == 1 && fholder == T_Q);       /* 7: a queued page is flagged */
       assert(owner == h);                          /* 6: found only on its owner's queue */
       queued--;
       fholder = me
    :: else -> skip
    fi
  }
}

/* PageGainedFree for a page held in a critical section by heap myh. Sets relok if released. */
inline page_gained_free(myh) {
  relok = 0;
  if
  :: used == 0 ->
     if
     :: skip                                        /* kept as a retained empty */
     :: atomic {                                    /* TryRelease */
          if
          :: where != ACTIVE && xflag == 0 && xhead == 0 && xcnt == 0 ->
             assert(where != DETACHED);
             assert(queued == 0 && fholder == T_NONE);   /* 11 */
             onpartial[myh] = 0; pcount[myh]--; where = NOWHERE;
             released = 1; relok = 1
          :: else -> skip
          fi
        }
     fi
  :: else -> skip
  fi;
  if
  :: !relok && where == NOWHERE -> atomic { where = PARTIAL; onpartial[myh] = 1 }   /* PartialPush */
  :: else -> skip
  fi
}

/* FilePage(page, 0) after a drain; ends the critical section. */
inline file_page(myh) {
  if
  :: where == ACTIVE -> CS_EXIT
  :: where != ACTIVE && lfree == 0 ->
     if
     :: where == NOWHERE -> atomic { assert(lfree == 0); where = DETACHED; CS_EXIT }   /* Detach */
     :: else -> CS_EXIT
     fi
  :: where != ACTIVE && lfree != 0 ->
     page_gained_free(myh);
     CS_EXIT
  fi
}

/* The owner thread `me` of heap myh drains its own queue (CollectPending / ProcessAllPending). */
inline drain_own(myh, me) {
  pop_all(myh, me);
  if
  :: chain != 0 ->
     atomic {
       CS_ENTER;
#ifndef MUTANT_MD
       if
       :: where == DETACHED -> where = NOWHERE      /* private before TakeAll drops the flag */
       :: else -> skip
       fi
#endif
     };
     take_all_absorb(me);
#ifdef MUTANT_MD
     if                                             /* MD: kNowhere only after TakeAll */
     :: where == DETACHED -> where = NOWHERE
     :: else -> skip
     fi;
#endif
     file_page(myh)
  :: else -> skip
  fi
}

/* Heap::FreeDetached by thread me of heap myh. */
inline free_detached(b, me, myh) {
  if
  :: atomic { xflag == 0 -> assert(!released); xflag = 1; fholder = me };   /* TryAcquireFlag */
     o2 = owner;                                    /* re-read under the flag */
     w2 = where;
#ifndef MUTANT_MB
     if
     :: o2 != myh || w2 != DETACHED ->              /* adopted meanwhile: we are its edge winner */
        push_mt(b, me);
        assert(!won);
        queue_won(me)
     :: else ->
#endif
        atomic { CS_ENTER; push_local(b) };
        atomic { where = PARTIAL; onpartial[myh] = 1 };   /* PartialPush before the flag drops */
        take_all_absorb(me);
        if
        :: used == 0 -> page_gained_free(myh)
        :: else -> skip
        fi;
        CS_EXIT
#ifndef MUTANT_MB
     fi
#endif
  :: atomic { xflag == 1 -> skip };                 /* flag set: queued or held by someone */
     free_remote(b, me)
  fi
}

/* Heap::Free of live block b by thread me of heap myh. */
inline free_block(b, me, myh) {
  atomic { assert(!released); w = where };          /* where_acquire() ... */
  o = owner;                                        /* ... THEN owner_relaxed() */
  if
  :: o == myh && w == DETACHED ->
#ifdef MUTANT_MA
     atomic { CS_ENTER; push_local(b) };            /* MA: local push without the flag, then */
     atomic { where = PARTIAL; onpartial[myh] = 1 };   /* file it as any page that gained a free */
     CS_EXIT                                        /* block (PartialPush) */
#else
     free_detached(b, me, myh)
#endif
  :: o == myh && w != DETACHED ->
     atomic { CS_ENTER; push_local(b) };
     if
     :: used == 0 && w == PARTIAL -> page_gained_free(myh)
     :: else -> skip
     fi;
     CS_EXIT
  :: o != myh -> free_remote(b, me)
  fi
}

proctype Producer() {
  byte b, o, oh, oc, chain;
  bit ofl, won;
  b = 2;
  do
  :: b <= NB -> free_remote(b, T_P); b++
  :: else -> break
  od
}

proctype Owner() {
  byte w, o, o2, w2, oh, oc, taken, tcnt, n, nx, chain, r;
  bit ofl, won, relok, freed;
  do
  :: !freed -> free_block(1, T_O, H); freed = 1
  :: r < ROUNDS_O -> r++; drain_own(H, T_O)
  :: freed -> break
  od
}

/* AdoptHeld_mt by A (holding the flag), then TakeAll + absorb. Enters the critical section. */
inline take_over() {
#ifdef MUTANT_MC
  atomic { CS_ENTER; where = NOWHERE };             /* MC: where first ... */
  atomic { assert(xflag == 1 && fholder == T_A);    /* OC */
           pcount[H]--; owner = HA; pcount[HA]++ }  /* ... then the owner */
#else
  atomic { CS_ENTER;
           assert(xflag == 1 && fholder == T_A);    /* OC: owner changes only under the flag */
           pcount[H]--; owner = HA; pcount[HA]++ };
  where = NOWHERE;
#endif
  take_all_absorb(T_A)
}

#define HOLDS_ANY (mine[1] || mine[2] || mine[NB])

proctype Adopter() {
  byte w, o, o2, w2, oh, oc, taken, tcnt, n, nx, chain, r, b;
  bit ofl, won, relok;
  bit mine[NB + 1];                                 /* blocks A allocated and still holds */
  do
  :: r < ROUNDS_A ->
     r++;
     if
     :: pop_all(H, T_A);                            /* SweepQueue over H's queue */
        if
        :: chain != 0 ->
           w = where;                               /* where_acquire() */
           if
           :: w == DETACHED ->                      /* AdoptFromPending_mt */
              take_over();
              if
              :: lfree != 0 ->                      /* SetActive */
                 atomic { where = ACTIVE; isactive[HA] = 1; CS_EXIT }
              :: else ->                            /* (corrupt remote list only) */
                 atomic { assert(lfree == 0); where = DETACHED; CS_EXIT }
              fi
           :: w == DETACHED && xcnt == NB ->        /* ReclaimIdleOwner_mt */
              take_over();
              file_page(HA)                         /* used == 0: TryRelease, or kept */
           :: true ->                               /* not detached, or a gate said no */
              atomic { assert(owner == H && qhead[H] == 0 && qhead[HA] == 0);
                       qhead[H] = 1; queued++; assert(queued <= 1); fholder = T_Q }  /* PushChain_mt */
           fi
        :: else -> skip
        fi
     :: drain_own(HA, T_A)
     :: (isactive[HA] || onpartial[HA]) && lfree != 0 ->   /* allocate (SetActive from partial) */
        atomic {
          CS_ENTER;
          assert(owner == HA);
          onpartial[HA] = 0; isactive[HA] = 1; where = ACTIVE;
          b = lfree; lfree = bnext[b];
          assert(bstate[b] == FREE); bstate[b] = LIVE; used++;
          mine[b] = 1
        };
        CS_EXIT
     :: HOLDS_ANY ->         /* free a block A allocated */
        atomic { b = 1; do :: !mine[b] -> b++ :: else -> break od; mine[b] = 0 };
        free_block(b, T_A, HA)
     :: isactive[HA] && xcnt != 0 ->                /* CollectActive: TakeBlocksKeepFlag */
        atomic { CS_ENTER; assert(owner == HA && where == ACTIVE);
                 taken = xhead; tcnt = xcnt; xhead = 0; xcnt = 0 };   /* the flag stays */
        absorb();
        CS_EXIT
     :: isactive[HA] ->                             /* SetActive(another page): the old one ... */
        if
        :: lfree == 0 ->                            /* ... Detach: the last touch */
           atomic { assert(lfree == 0 && where == ACTIVE); isactive[HA] = 0; where = DETACHED }
        :: else ->                                  /* ... PageGainedFree */
           atomic { CS_ENTER; isactive[HA] = 0; where = NOWHERE };
           page_gained_free(HA);
           CS_EXIT
        fi
     fi
  :: break
  od;
  do                                                /* free what A still holds */
  :: HOLDS_ANY ->
     atomic { b = 1; do :: !mine[b] -> b++ :: else -> break od; mine[b] = 0 };
     free_block(b, T_A, HA)
  :: else -> break
  od
}

init {
  byte w, o, o2, w2, oh, oc, taken, tcnt, n, nx, chain, b, me, seen;
  bit ofl, won, relok;

  atomic {
    pcount[H] = 1;
    run Producer();
    run Owner();
    run Adopter()
  };

  (_nr_pr == 1);                                    /* quiescence */

  atomic {
    assert(incs == 0);
    assert(queued == qhead[H] + qhead[HA] && queued <= 1);   /* 5 */
    assert(qhead[1 - owner] == 0);                  /* 6 */
    assert(xflag == queued);                        /* 7 */
    assert(xhead == 0 || xflag == 1);               /* 8 */
    assert(xhead != 0 || xcnt == 0);
    assert(fholder == (queued -> T_Q : T_NONE));
    if
    :: released -> assert(queued == 0 && pcount[H] == 0 && pcount[HA] == 0)
    :: else ->
       assert(pcount[owner] == 1 && pcount[1 - owner] == 0);
       assert(where != DETACHED || lfree == 0);     /* L */
       assert(onpartial[owner] == (where == PARTIAL) && onpartial[1 - owner] == 0);
       assert(isactive[owner] == (where == ACTIVE) && isactive[1 - owner] == 0);
       assert(where != PARTIAL || lfree != 0);
       assert(where != NOWHERE)                     /* L: kNowhere is transient */
    fi
  };

  /* final drain of the owner's queue, as the owner's thread */
  me = (owner == H -> T_O : T_A);
  if
  :: owner == H -> drain_own(H, me)
  :: else -> drain_own(HA, me)
  fi;

  atomic {
    assert(qhead[H] == 0 && qhead[HA] == 0 && queued == 0);
    assert(xflag == 0 && xhead == 0 && xcnt == 0 && fholder == T_NONE && incs == 0);
    /* BA: every block is in the local free list exactly once */
    seen = 0; n = 0; b = lfree;
    do
    :: b != 0 ->
       assert(n < NB);
       assert(bstate[b] == FREE);
       assert((seen & (1 << b)) == 0);
       seen = seen | (1 << b);
       n++;
       b = bnext[b]
    :: else -> break
    od;
    assert(n == NB && used == 0);
    b = 1;
    do
    :: b <= NB -> assert(bstate[b] == FREE); b++
    :: else -> break
    od;
    assert(released || where != DETACHED)
  }
}
