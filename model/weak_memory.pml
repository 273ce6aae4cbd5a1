/*
 * weak_memory.pml -- C++ atomics with weak loads, for the spin models of store-buffering shapes
 * (sweep_sb.pml, ready_sb.pml). Included by them; not a model by itself.
 *
 * Spin interleaves statements under sequential consistency. To model what C++ allows a relaxed
 * or acquire load to return, every atomic location keeps its whole modification order, and
 * every thread a view (the oldest write of each location it may still read):
 *   hval[x][i]      value of the i-th write of x (index 0: the initial value)
 *   hlen[x]         number of writes so far; the latest is hlen[x] - 1
 *   hmsg[x][i][y]   the view carried by write i of x (what an acquire that reads it learns)
 *   lastsc[x]       index of the latest seq_cst write of x
 *   view[t][y]      thread t may not read a write of y older than view[t][y]
 * Operations (each is one atomic step; `ord` is RLX, ACQ, REL, ACQREL or SC):
 *   load            returns ANY write of x from view[t][x] on (coherence: never older than what
 *                   t has read, written or learned through happens-before); a seq_cst load also
 *                   from lastsc[x] on. The choice is nondeterministic, so spin tries every one.
 *   store           appends a write; it carries t's view if it is a release (else only itself).
 *   RMW             reads the latest write (C++ atomicity of read-modify-writes), appends one,
 *                   and carries on the message of the write it read (release sequences).
 *   CAS (strong)    succeeds as an RMW when the latest value equals `expected`; fails as a load
 *                   with the failure order returning any readable value different from it (a
 *                   failed compare-exchange is only a load in C++, and may read a stale value).
 *   acquire         (ACQ, ACQREL, SC loads and RMWs) joins the message of the write read.
 *   heavy fence     wm_heavy_fence(t, u): the membarrier half of an asymmetric fence pair
 *                   (park_sb.pml); merges the two threads' views at one step.
 * seq_cst operations therefore happen in one total order, the order in which spin interleaves
 * them (writes in that order, seq_cst loads never older than the latest seq_cst write), while a
 * relaxed or acquire load may still return an older value: exactly the store-buffering outcome
 * ("each thread's load misses the other thread's earlier store") C++ allows unless all four
 * operations are seq_cst.
 *
 * Locations NV.. NL-1 are "seq_cst only": every load of them is seq_cst (asserted) and every
 * write seq_cst, so a load always reads the latest write; they keep only that write (and its
 * message), and threads keep no view of them. They still carry messages (a seq_cst store
 * carries its writer's view, an RMW also what the write it replaced carried), which is how a
 * thread learns through them what another did before. Locations 0..NV-1 keep their history.
 *
 * Simplifications (stronger than C++, so a `verify` here proves less than full C++): writes of
 * a location are ordered as spin interleaves them, and a load never reads a write that has not
 * been executed yet (no load buffering); a failed CAS never reads a value equal to `expected`.
 * The models use this only for the shapes named in each model.
 *
 * Before including: #define NT (threads), NL (locations), NV (locations with a history: the
 * first NV), HM (writes kept per such location).
 * Each proctype that uses the operations declares WM_LOCALS.
 */

#define RLX    0
#define ACQ    1
#define REL    2
#define ACQREL 3
#define SC     4
#define IS_ACQ(o) ((o) == ACQ || (o) == ACQREL || (o) == SC)
#define IS_REL(o) ((o) == REL || (o) == ACQREL || (o) == SC)

byte hval[NL * HM];
byte hlen[NL];
byte hmsg[NL * HM * NV];
byte lastsc[NL];
byte view[NT * NV];

#define HV(x, i)      hval[(x) * HM + (i)]
#define HMSG(x, i, y) hmsg[((x) * HM + (i)) * NV + (y)]
#define VW(t, y)      view[(t) * NV + (y)]
#define LATEST(x)     HV(x, hlen[x] - 1)
#define TRACKED(x)    ((x) < NV)

#define WM_LOCALS byte wm_i, wm_j, wm_lo, wm_hi, wm_old; byte wm_carry[NV]

/* Scratch variables back to 0 after each operation, so that they do not tell states apart. */
inline wm_done() {
  wm_i = 0;
  wm_j = 0;
  wm_lo = 0;
  wm_hi = 0;
  wm_old = 0
}

/* Location x starts with value v (write 0, seq_cst, carrying nothing). Before any thread runs. */
inline wm_init(x, v) {
  HV(x, 0) = v;
  hlen[x] = 1
}

/* Acquire: thread t learns the view carried by write i of x. */
inline wm_join(t, x, i) {
  wm_j = 0;
  do
  :: wm_j < NV ->
     if
     :: HMSG(x, i, wm_j) > VW(t, wm_j) -> VW(t, wm_j) = HMSG(x, i, wm_j)
     :: else -> skip
     fi;
     wm_j++
  :: else -> break
  od
}

/* Appends value v to x as thread t's write with order `ord`; its index is left in wm_i. A
   seq_cst-only location keeps only this write (index 0). */
inline wm_append(t, x, v, ord) {
  if
  :: TRACKED(x) ->
     wm_i = hlen[x];
     assert(wm_i < HM);                           /* raise HM */
     hlen[x]++;
     VW(t, x) = wm_i
  :: else ->
     assert(ord == SC);                           /* a seq_cst-only location */
     wm_i = 0
  fi;
  HV(x, wm_i) = v;
  wm_j = 0;
  do
  :: wm_j < NV -> HMSG(x, wm_i, wm_j) = (IS_REL(ord) -> VW(t, wm_j) : 0); wm_j++
  :: else -> break
  od;
  if
  :: TRACKED(x) -> HMSG(x, wm_i, x) = wm_i
  :: else -> skip
  fi;
  if
  :: ord == SC -> lastsc[x] = wm_i
  :: else -> skip
  fi
}

/* v = x.load(ord) */
inline wm_load(t, x, ord, v) {
  if
  :: TRACKED(x) ->
     wm_lo = VW(t, x);
     if
     :: ord == SC && lastsc[x] > wm_lo -> wm_lo = lastsc[x]
     :: else -> skip
     fi;
     wm_i = wm_lo;
     do                                           /* any readable write */
     :: wm_i < hlen[x] - 1 -> wm_i++
     :: break
     od;
     VW(t, x) = wm_i
  :: else ->
     assert(ord == SC);                           /* a seq_cst-only location: the latest */
     wm_i = 0
  fi;
  v = HV(x, wm_i);
  if
  :: IS_ACQ(ord) -> wm_join(t, x, wm_i)
  :: else -> skip
  fi;
  wm_done()
}

/* x.store(v, ord) */
inline wm_store(t, x, ord, v) {
  wm_append(t, x, v, ord);
  wm_done()
}

/* old = x.fetch_<op>(...): newv is an expression of `old`, evaluated after old is read. */
inline wm_rmw(t, x, ord, old, newv) {
  wm_lo = hlen[x] - 1;                            /* an RMW reads the latest write */
  old = HV(x, wm_lo);
  if
  :: IS_ACQ(ord) -> wm_join(t, x, wm_lo)
  :: else -> skip
  fi;
  /* Release sequence: the new write also carries what the write it read carried (saved first:
     for a seq_cst-only location the append overwrites that write). */
  wm_j = 0;
  do
  :: wm_j < NV -> wm_carry[wm_j] = HMSG(x, wm_lo, wm_j); wm_j++
  :: else -> break
  od;
  wm_append(t, x, newv, ord);
  wm_j = 0;
  do
  :: wm_j < NV ->
     if
     :: wm_carry[wm_j] > HMSG(x, wm_i, wm_j) -> HMSG(x, wm_i, wm_j) = wm_carry[wm_j]
     :: else -> skip
     fi;
     wm_carry[wm_j] = 0;
     wm_j++
  :: else -> break
  od;
  wm_done()
}

/* ok = x.compare_exchange_strong(expected, desired, succ, fail) */
inline wm_cas(t, x, succ, fail, expected, desired, ok) {
  assert(TRACKED(x) || fail == SC);
  wm_lo = (TRACKED(x) -> VW(t, x) : 0);
  if
  :: fail == SC && lastsc[x] > wm_lo -> wm_lo = lastsc[x]
  :: else -> skip
  fi;
  wm_hi = 255;                                    /* newest readable write != expected */
  wm_i = wm_lo;
  do
  :: wm_i < hlen[x] ->
     if
     :: HV(x, wm_i) != expected -> wm_hi = wm_i
     :: else -> skip
     fi;
     wm_i++
  :: else -> break
  od;
  if
  :: LATEST(x) == expected ->
     wm_rmw(t, x, succ, wm_old, desired);
     ok = 1
  :: wm_hi != 255 ->                              /* fails, reading some value != expected */
     wm_i = wm_lo;
     do
     :: wm_i < wm_hi -> wm_i++
     :: HV(x, wm_i) != expected -> break
     od;
     if
     :: TRACKED(x) -> VW(t, x) = wm_i
     :: else -> skip
     fi;
     if
     :: IS_ACQ(fail) -> wm_join(t, x, wm_i)
     :: else -> skip
     fi;
     ok = 0
  fi;
  wm_done()
}

/* The heavy half of an asymmetric fence pair (mf2/fence.h: membarrier), executed by thread t
   against thread u, whose light half (a compiler barrier) keeps u's program order. One atomic
   step at the point P where it splits u's instruction stream: everything u wrote or saw before
   P becomes visible to t's later loads, and everything t wrote or saw before the fence becomes
   visible to u's later loads (both views merged). */
inline wm_heavy_fence(t, u) {
  wm_j = 0;
  do
  :: wm_j < NV ->
     if
     :: VW(u, wm_j) > VW(t, wm_j) -> VW(t, wm_j) = VW(u, wm_j)
     :: VW(t, wm_j) > VW(u, wm_j) -> VW(u, wm_j) = VW(t, wm_j)
     :: else -> skip
     fi;
     wm_j++
  :: else -> break
  od;
  wm_done()
}
