/*
 * weak_litmus.pml -- checks of weak_memory.pml itself on the two classic litmus tests, so the
 * weak-memory models rest on a library that allows exactly what C++ allows here.
 *
 * SB (store buffering):  T0: x = 1; r0 = y     T1: y = 1; r1 = x     outcome r0 == r1 == 0
 *   allowed when any of the four accesses is not seq_cst, forbidden when all are seq_cst.
 * MP (message passing):  T0: d = 1; f = 1      T1: r0 = f; r1 = d    outcome r0 == 1, r1 == 0
 *   allowed with relaxed f, forbidden with a release store and an acquire load of f.
 *
 * Variants (-D): SB_SC (verify: outcome unreachable), SB_RELAXED (the outcome is reached:
 * assertion fails), MP_RELACQ (verify), MP_RELAXED (assertion fails).
 */

#define NT 2
#define NL 3
#define NV 3
#define HM 3
#include "weak_memory.pml"

#define X 0
#define Y 1
#define D 2

#if defined(SB_SC) || defined(MP_RELACQ)
#define ST SC
#define LD SC
#define REL_ST REL
#define ACQ_LD ACQ
#else
#define ST RLX
#define LD RLX
#define REL_ST RLX
#define ACQ_LD RLX
#endif

byte r0, r1;

#if defined(SB_SC) || defined(SB_RELAXED)
proctype T0() { WM_LOCALS; atomic { wm_store(0, X, ST, 1) }; atomic { wm_load(0, Y, LD, r0) } }
proctype T1() { WM_LOCALS; atomic { wm_store(1, Y, ST, 1) }; atomic { wm_load(1, X, LD, r1) } }
#define BAD (r0 == 0 && r1 == 0)
#else
proctype T0() { WM_LOCALS; atomic { wm_store(0, D, RLX, 1) }; atomic { wm_store(0, X, REL_ST, 1) } }
proctype T1() { WM_LOCALS; atomic { wm_load(1, X, ACQ_LD, r0) }; atomic { wm_load(1, D, RLX, r1) } }
#define BAD (r0 == 1 && r1 == 0)
#endif

init {
  atomic {
    wm_init(X, 0);
    wm_init(Y, 0);
    wm_init(D, 0);
    run T0();
    run T1()
  };
  _nr_pr == 1;
  assert(!BAD)
}
