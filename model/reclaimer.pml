/*
 * reclaimer.pml -- the background reclaimer's wake-up handshake: a page that comes back whole is
 * always swept by some pass, and the reclaimer never sleeps without a timeout while a count it
 * has not seen is owed (README.md, "reclaimer.pml").
 *
 * C++ being modelled (mf2/reclaimer.cc; the owner stays idle, so a pass sweeps every count it
 * reads). Every access of the handshake is seq_cst, so sequentially consistent interleavings,
 * which is what spin explores, are exactly the executions C++ allows. (The one relaxed store,
 * g_waiting = false after a wake-up, can only make a notifier wake the thread needlessly;
 * it is modelled as immediate.)
 *   COUNT     the owner's count of whole pages not yet swept   Heap::xwhole_unswept_
 *   PENDING   the futex word: a notification to consume       g_pending
 *   SLEEPING  the thread waits for a notification           g_waiting
 * NN notifiers (a free whose push made a page whole: PushChain / PushRemote_mt, then Notify):
 *     COUNT += 1; if PENDING != 0 return; if exchange(PENDING, 1) == 0 && SLEEPING: futex wake
 * The reclaimer (Main):
 *     loop { PENDING = 0; pass (read COUNT, sweep what it read); SLEEPING = 1;
 *            if PENDING == 0: futex wait (sleeps only if PENDING is still 0); SLEEPING = 0 }
 * A futex wait checks its word and goes to sleep atomically; a wake finds the sleeper or is lost.
 *
 * Asserted when nothing can move any more (every notifier done, the reclaimer asleep): every
 * count was swept (COUNT == 0, SWEPT == NN).
 *
 * Variants (-D):
 *   (none)                    the C++                                                -> verifies
 *   MUTANT_CLEAR_AFTER_PASS   PENDING cleared after the pass, not before: a notifier
 *                             that saw the earlier notification unconsumed returns, the
 *                             pass missed its count                                  -> count left
 *   MUTANT_NOTIFY_FIRST       Notify before counting the page: the pass the
 *                             notification starts may read the count before it grows -> count left
 *   MUTANT_WAKE_CHECK_FIRST   the notifier reads SLEEPING before its exchange: it
 *                             reads 0, the reclaimer goes to sleep, the exchange then
 *                             wakes nobody                                           -> count left
 */

#ifndef NN
#define NN 2
#endif

byte COUNT = 0;
bit PENDING = 0;
bit SLEEPING = 0;
bit asleep = 0;      /* the reclaimer is inside a futex wait */
byte SWEPT = 0;
byte done = 0;       /* notifiers finished */

inline notify() {
  bit old;
  bit sleeping_seen;
#ifdef MUTANT_WAKE_CHECK_FIRST
  sleeping_seen = SLEEPING;
#endif
  if
  :: PENDING != 0 -> skip                       /* fast path: a notification is unconsumed */
  :: else ->
     atomic { old = PENDING; PENDING = 1 };     /* exchange */
#ifndef MUTANT_WAKE_CHECK_FIRST
     sleeping_seen = SLEEPING;
#endif
     if
     :: old == 0 && sleeping_seen -> asleep = 0 /* futex wake: ends a wait, if any */
     :: else -> skip
     fi
  fi
}

active [NN] proctype Notifier() {
#ifdef MUTANT_NOTIFY_FIRST
  notify();
  COUNT++;
#else
  COUNT++;                                      /* xwhole_unswept_ fetch_add, seq_cst */
  notify();
#endif
  done++
}

active proctype Reclaimer() {
  byte seen;
loop:
#ifndef MUTANT_CLEAR_AFTER_PASS
  PENDING = 0;
#endif
  seen = COUNT;                                 /* the pass reads the counts ... */
  atomic { COUNT = COUNT - seen; SWEPT = SWEPT + seen };  /* ... and sweeps those pages */
#ifdef MUTANT_CLEAR_AFTER_PASS
  PENDING = 0;
#endif
  SLEEPING = 1;
  if
  :: PENDING == 0 ->
     atomic {                                   /* futex wait: check the word and sleep */
       if
       :: PENDING == 0 -> asleep = 1
       :: else -> skip
       fi
     };
end_wait:
     asleep == 0
  :: else -> skip
  fi;
  SLEEPING = 0;
  goto loop
}

/* Runs only when no other statement can: every notifier done and the reclaimer asleep. */
active proctype Check() {
end_check:
  timeout ->
  assert(done == NN && asleep == 1 && COUNT == 0 && SWEPT == NN)
}
