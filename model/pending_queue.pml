/*
 * pending_queue.pml -- a heap's pending queue on its own: an MPSC Treiber stack of pages
 * (H.pending_head, link P.pending_next), pushed by producers, popped by one or two consumers.
 *
 * C++ being modelled:
 *   push (producer that won P's in_remote_pending 0->1 edge):
 *        loop { h = H.pending_head; P.pending_next = h; CAS(H.pending_head, h -> P) }
 *   pop-all (owner):  chain = exchange(H.pending_head, null); for each P: next = P.pending_next,
 *        THEN drain P (which clears its flag, so P may be pushed again), P = next.
 *   single-pop (alternative): loop { h = head; if !h break; n = h->pending_next;
 *        CAS(head, h -> n) }, then drain h.
 * The page's flag is abstracted to `flag[p]`, an enqueue token: a producer pushes P only after
 * setting it 0->1, and the consumer's drain clears it. That is exactly what the xremote word
 * guarantees (see remote_free.pml); the stack algorithm is what is checked here.
 *
 * Sizes: pages A=1 and B=2; producer i pushes page i up to PUSHES times (whenever it wins the
 * token); NCONS consumers each pop up to CROUNDS times. Page id 0 = nullptr.
 *
 * Invariants asserted (numbers of docs/protocol.md):
 *   5   never enqueued twice: queued[p] in {0,1}; a popped page really was queued
 *  14   per-page enqueue sequence numbers are dequeued in order, each exactly once
 *  12   the queue is a well-formed list (no cycle) at quiescence
 *   7   at quiescence: token set <=> page in the queue; pushes == pops + still queued
 *   9   after a final pop-all: queue empty, all tokens clear, pushes == pops
 *
 * Variants (-D):
 *   (none)                       pop-all, one consumer                     -> verifies
 *   TWO_CONSUMERS                pop-all, two consumers                    -> verifies
 *   SINGLE_POP                   single-pop CAS, one consumer (owner only) -> verifies
 *   SINGLE_POP TWO_CONSUMERS  =  MUTANT_M4: single-pop CAS, two consumers -> ABA
 *   MUTANT_M5                    pop-all, drain before reading next        -> chain cut
 */

#ifdef MUTANT_M4
#define SINGLE_POP
#define TWO_CONSUMERS
#endif

#define NPAGES  2
#ifndef PUSHES
#define PUSHES  2
#endif
#ifndef CROUNDS
#define CROUNDS 2
#endif

byte pending_head;
byte pending_next[NPAGES + 1];
bit  flag[NPAGES + 1];            /* the page's in_remote_pending flag (enqueue token) */
/* ghosts */
byte queued[NPAGES + 1];          /* debug enqueue counter */
byte pushes[NPAGES + 1];          /* enqueue sequence number of the page's latest push */
byte pops[NPAGES + 1];            /* dequeues so far */

/* The consumer is done with P: drain it, which clears the flag (P may be pushed again). */
inline dequeue(p) {
  atomic {
    assert(queued[p] == 1);                        /* inv 5: only queued pages come out */
    assert(pops[p] + 1 == pushes[p]);              /* inv 14: in order, exactly once */
    queued[p]--; pops[p]++;
    flag[p] = 0
  }
}

/* Producer: push P (caller holds P's token). */
inline push(p) {
  do
  :: h = pending_head;                             /* h = H.pending_head */
     pending_next[p] = h;                          /* P.pending_next = h */
     if
     :: atomic {                                   /* CAS(H.pending_head, h, P) */
          pending_head == h ->
          pending_head = p;
          queued[p]++; pushes[p]++;
          assert(queued[p] <= 1)                   /* inv 5 */
        };
        break
     :: else -> skip                               /* CAS failed: retry */
     fi
  od
}

/* Consumer: pop-all and walk the chain. */
inline pop_all() {
  atomic { chain = pending_head; pending_head = 0 };   /* exchange(H.pending_head, null) */
  do
  :: chain != 0 ->
#ifdef MUTANT_M5
     dequeue(chain);                               /* M5: drain (clear flag) first ... */
     nxt = pending_next[chain];                    /* ... then read a possibly rewritten next */
#else
     nxt = pending_next[chain];                    /* FIRST next = P.pending_next */
     dequeue(chain);                               /* THEN drain P */
#endif
     chain = nxt
  :: else -> break
  od
}

/* Consumer: single-pop CAS. */
inline pop_one() {
  chain = 0;
  do
  :: h = pending_head;                             /* h = H.pending_head */
     if
     :: h == 0 -> break                            /* empty */
     :: else -> skip
     fi;
     nxt = pending_next[h];                        /* n = h->pending_next */
     if
     :: atomic { pending_head == h -> pending_head = nxt }; chain = h; break  /* CAS(head,h,n) */
     :: else -> skip                               /* CAS failed: retry */
     fi
  od;
  if
  :: chain != 0 -> dequeue(chain)
  :: else -> skip
  fi
}

proctype Producer(byte p) {
  byte k, h;
  do
  :: k < PUSHES ->
     k++;
     if
     :: atomic { flag[p] == 0 -> flag[p] = 1 }; push(p)   /* won the flag's 0->1 edge */
     :: else -> skip                                      /* flag already set: no push */
     fi
  :: else -> break
  od
}

proctype Consumer() {
  byte r, h, chain, nxt;
  do
  :: r < CROUNDS ->
     r++;
#ifdef SINGLE_POP
     pop_one()
#else
     pop_all()
#endif
  :: break
  od
}

init {
  byte p, h, n, occ, chain, nxt;

  atomic {
    run Producer(1);
    run Producer(2);
    run Consumer();
#ifdef TWO_CONSUMERS
    run Consumer()
#endif
  };

  (_nr_pr == 1);                                   /* quiescence */

  atomic {
    p = 1;
    do
    :: p <= NPAGES ->
       occ = 0; h = pending_head; n = 0;
       do
       :: h != 0 && n <= NPAGES -> if :: h == p -> occ++ :: else -> skip fi; h = pending_next[h]; n++
       :: else -> break
       od;
       assert(h == 0);                             /* inv 12: list ends (no cycle) */
       assert(occ == queued[p]);                   /* inv 5 */
       assert(flag[p] == (occ == 1));              /* inv 7: flag <=> queued */
       assert(pushes[p] == pops[p] + occ);         /* nothing lost */
       p++
    :: else -> break
    od
  };

  pop_all();                                       /* final drain */

  atomic {
    assert(pending_head == 0);                     /* inv 9 */
    p = 1;
    do
    :: p <= NPAGES -> assert(flag[p] == 0 && queued[p] == 0 && pushes[p] == pops[p]); p++
    :: else -> break
    od
  }
}
