/*
 * detach_armed.pml -- an adopter's test "detached and adoptable" against an owner that
 * re-detaches the same page after adoption was armed (a route switch at run time). Sequentially
 * consistent: the order of the adopter's two reads is what is checked (README.md).
 *
 * C++ being modelled (mf2/heap.h Heap::Free, mf2/heap.cc PageGainedFree, SetActive, Detach,
 * mf2/heap_adopt.cc AdoptFromPending_mt, mf2/page.h adoptable_detach):
 *   The page starts detached while adoption was NOT armed (adoptable_detach = 0): its owner H
 *   frees into it without taking its flag (Heap::Free, then PageGainedFree: kNowhere, kPartial),
 *   later allocates from it again (SetActive: kNowhere, kActive) and, once it is full and H
 *   moves on, detaches it again (Detach: adoptable_detach = AdoptionArmed(), then where =
 *   kDetached). Every step from the local free to that store is H's private use of the page
 *   (ghost `incs`, as in detached.pml).
 *   Switch: mf2_set_route(route_p) at any time: AdoptionArmed() becomes 1.
 *   Producer: a remote free wins the page's flag and queues it on H.
 *   Adopter: pops H's queue (holding the flag), reads adoptable_detach and where (in the order
 *   under test), and takes the page over if it is detached and adoptable (AdoptHeld_mt), else
 *   gives it back.
 *
 * Asserted: mutual exclusion of the page's private users (incs <= 1).
 *
 * Variants (-D):
 *   (none)              adoptable_detach read before where (issue 10)         -> verifies
 *   MUTANT_WHERE_FIRST  where read first (before issue 10): the adopter pairs the kDetached of
 *                       the unarmed detach with the `1` of the Detach in progress and takes a
 *                       page H still uses                                       -> incs == 2
 */

#define NOWHERE  0
#define ACTIVE   1
#define PARTIAL  2
#define DETACHED 3
#define H 1
#define A 2

byte where = DETACHED;
bit adoptable_detach = 0;                       /* detached while adoption was not armed */
bit armed = 0;                                  /* AdoptionArmed() (sticky) */
byte owner = H;
bit flag = 0;                                   /* in_remote_pending */
bit queued = 0;                                 /* on H's pending queue */
byte incs = 0;                                  /* ghost: threads in the page's private use */

active proctype Switch() {
  armed = 1
}

active proctype Producer() {
  atomic { flag == 0 -> flag = 1 };             /* wins the 0->1 edge */
  atomic { owner == H -> queued = 1 }           /* QueueWonPage_mt on the owner read now */
}

active proctype Owner() {
  if
  :: atomic {                                   /* Heap::Free: detached, ours, not armed */
       where == DETACHED && owner == H && !adoptable_detach ->
       incs++;
       assert(incs <= 1)                        /* PushLocal */
     };
     where = NOWHERE;                           /* PageGainedFree */
     where = PARTIAL;                           /* PartialPush */
     where = NOWHERE;                           /* SetActive: PartialRemove */
     where = ACTIVE;
     adoptable_detach = armed;                  /* full, H moves on: Detach */
     atomic { where = DETACHED; incs-- }
  :: atomic { !(where == DETACHED && owner == H && !adoptable_detach) -> skip }  /* not here */
  fi
}

active proctype Adopter() {
  byte w;
  bit a;
  atomic { queued == 1 -> queued = 0 };         /* pop: we hold the flag */
#ifdef MUTANT_WHERE_FIRST
  w = where;
  a = adoptable_detach;
#else
  a = adoptable_detach;                         /* acquire, before where */
  w = where;
#endif
  if
  :: w == DETACHED && a ->
     atomic { incs++; assert(incs <= 1) };      /* AdoptHeld_mt */
     owner = A;
     where = NOWHERE;
     atomic { flag = 0; incs-- }                /* TakeAll, absorb: the page is A's */
  :: else -> queued = 1                         /* declined: given back, flag held */
  fi
}
