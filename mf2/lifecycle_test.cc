// Issue 10, the core's lifecycle items, as deterministic tests (explicit heaps) and tests of the
// thread-local path (real threads, a forked child under an address-space limit):
//   item 3  the pending queue's unprocessed pages stay visible: an owner that goes idle right
//           after one slow path strands none of its queued pages (idle reclamation finds them);
//   item 1  allocations after the thread-exit hook (a key destructor in the last round) do not
//           leave a heap claimed by a thread that is gone;
//   item 5  a thread that never allocated frees without taking (or mapping) a heap;
//   item 6  when the OS refuses memory, memory freed earlier is given back and reused: after
//           freeing everything, a process gets (nearly) as much again, of any size class.
// The preloaded-malloc side of these items (real programs, glibc's thread teardown, hostile
// writes) is //mf2:lifecycle_preload_test.
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/mf2.h"
#include "mf2/page_source.h"
#include "mf2/policy.h"
#include "mf2/size_class.h"
#include "mf2/testing/scoped_policy.h"
#include "mf2/testing/test_heaps.h"
#include "mf2/thread_heap.h"

namespace mf2 {
namespace {

using testing::TestHeaps;

uint64_t Stat(const Heap* h, HeapStats::Counter c) { return h->stats().Get(c); }

// ---- Item 3: no private backlog ---------------------------------------------------------------

constexpr size_t kSize = 2048;
const uint32_t kClass = SizeToClass(kSize);

// Pages are what moves here: the per-thread caches are off, so every allocation and free reaches
// a page (as in heap_test and route_p_test).
void UsePagePolicy(Policy* p) {
  p->cache_class_bytes = 0;
  p->remote_batch = 1;  // every remote free reaches its page's remote stack at once
}

class PendingQueueTest : public ::testing::Test {
 protected:
  void TearDown() override { HeapRegistry::Global().CheckAll(true); }
};

// 20 pages of an owner come back whole through another heap's frees and are queued on the owner.
// The owner runs ONE slow path that reaches its queue, with a budget of one page, and goes idle.
// The pages it did not process must still be on its queue, where the idle sweep of the thread
// that completes another page finds and releases them. Before the fix they sat in the owner's
// private backlog, invisible to every sweep and adopter until the owner's next slow path.
TEST_F(PendingQueueTest, AnOwnerIdleAfterOneSlowPathStrandsNoQueuedPage) {
  constexpr int kPages = 20;
  testing::ScopedPolicy policy([](Policy* p) {
    UsePagePolicy(p);
    p->pending_budget = 1;
    p->reclaim_idle = false;  // nothing is swept while the pages are being freed
    p->reclaim_after_ns = 0;
    p->reclaim_batch = 1;
  });
  TestHeaps heaps;
  Heap* a = heaps.Acquire();
  Heap* b = heaps.Acquire();

  // `a` fills kPages pages (each detached once full) and has a fresh active page with one block.
  std::vector<std::vector<void*>> pages(kPages);
  for (auto& blocks : pages) {
    blocks.push_back(a->Allocate(kSize));
    while (PageOf(blocks[0])->HasFree()) blocks.push_back(a->Allocate(kSize));
  }
  std::vector<void*> a_blocks{a->Allocate(kSize)};
  for (auto& blocks : pages) ASSERT_EQ(PageOf(blocks[0])->where(), Page::Where::kDetached);

  // `b` frees every block of every page but one block of the first page: kPages - 1 pages come
  // back whole; all kPages are queued on `a` (the first page first: it is popped last).
  for (size_t i = 0; i < pages.size(); ++i) {
    auto& blocks = pages[i];
    while (blocks.size() > (i == 0 ? 1u : 0u)) {
      b->Free(blocks.back());
      blocks.pop_back();
    }
  }
  ASSERT_EQ(a->whole_unswept_mt(), kPages - 1);

  // One slow path of `a` that reaches its queue: fill the active page, then allocate once more.
  while (a->active_page(kClass)->HasFree()) a_blocks.push_back(a->Allocate(kSize));
  const uint64_t drained = Stat(a, HeapStats::k_pending_drained);
  a_blocks.push_back(a->Allocate(kSize));
  ASSERT_EQ(Stat(a, HeapStats::k_pending_drained), drained + 1) << "budget: one page drained";
  Page* reused = PageOf(a_blocks.back());
  ASSERT_NE(reused, PageOf(pages[0][0])) << "the last page queued is popped first";
  ASSERT_EQ(a->whole_unswept_mt(), kPages - 2) << "one whole page was taken by its owner";

  // `a` is idle now. `b` frees the last block of the first page: that page comes back whole, and
  // `b`'s free sweeps the idle owner's queue (ReclaimIdleOwner_mt), which must find every page
  // that is completely free: the kPages - 2 left unprocessed by the slow path, and this one.
  testing::ScopedPolicy reclaiming([](Policy* p) { p->reclaim_idle = true; });
  const uint64_t released = heaps.source().freed();
  const size_t a_pages = a->page_count();
  b->Free(pages[0].back());
  pages[0].pop_back();
  EXPECT_EQ(Stat(b, HeapStats::k_pages_reclaimed), static_cast<uint64_t>(kPages - 1))
      << "every completely free page of the idle owner is released";
  EXPECT_EQ(heaps.source().freed(), released + kPages - 1);
  EXPECT_EQ(a->page_count(), a_pages - (kPages - 1));
  EXPECT_EQ(a->whole_unswept_mt(), 0);
  HeapRegistry::Global().CheckAll(true);
  for (void* p : a_blocks) a->Free(p);
}

// ---- Item 1: allocations after the thread-exit hook -------------------------------------------

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MF2_LIFECYCLE_TSAN 1
#endif
#endif

pthread_key_t g_late_key;
std::vector<void*>* g_late_blocks = nullptr;
pthread_mutex_t g_late_mu = PTHREAD_MUTEX_INITIALIZER;

// The round of key destructors that allocates: the last one, where no later round can run MF2's
// destructor again. TSan finishes its own per-thread state in a key destructor of that round, and
// instrumented code running after it crashes inside TSan; under TSan the first round (which also
// runs after MF2's hook) is used.
#ifdef MF2_LIFECYCLE_TSAN
constexpr uintptr_t kAllocRound = 1;
#else
constexpr uintptr_t kAllocRound = PTHREAD_DESTRUCTOR_ITERATIONS;
#endif

// Created after MF2's key, so it runs after MF2's destructor in every round; re-armed until
// kAllocRound, where it allocates.
void LateDestructor(void* arg) {
  const uintptr_t round = reinterpret_cast<uintptr_t>(arg);
  if (round < kAllocRound) {
    pthread_setspecific(g_late_key, reinterpret_cast<void*>(round + 1));
    return;
  }
  void* kept = Allocate(200);
  Free(Allocate(3000));  // freed by the exiting thread itself
  pthread_mutex_lock(&g_late_mu);
  g_late_blocks->push_back(kept);
  pthread_mutex_unlock(&g_late_mu);
}

TEST(ThreadExit, AllocationsAfterTheExitHookLeaveNoHeapClaimed) {
  constexpr int kThreads = 100;
  Free(Allocate(1));  // MF2's key exists before ours
  ASSERT_EQ(pthread_key_create(&g_late_key, &LateDestructor), 0);
  std::vector<void*> blocks;
  g_late_blocks = &blocks;
  // One thread at a time: each can take over the heap its predecessor released.
  std::thread([] { Free(Allocate(100)); }).join();
  const uint32_t heaps_before = HeapRegistry::Global().heap_count();
  const Stats before = GetStats();
  for (int i = 0; i < kThreads; ++i) {
    std::thread([] {
      Free(Allocate(100));
      pthread_setspecific(g_late_key, reinterpret_cast<void*>(1));
    }).join();
  }
  ASSERT_EQ(blocks.size(), static_cast<size_t>(kThreads));
  EXPECT_LE(HeapRegistry::Global().heap_count(), heaps_before + 2)
      << "a heap taken after the exit hook stays claimed: one more heap per thread";
  const Stats mid = GetStats();
  EXPECT_EQ(mid.dead_thread_allocs - before.dead_thread_allocs, 2u * kThreads);
  for (void* p : blocks) Free(p);  // into heaps whose threads are gone
  const Stats after = GetStats();
  EXPECT_GT(after.dead_owner_reclaims, mid.dead_owner_reclaims);
  g_late_blocks = nullptr;
  pthread_key_delete(g_late_key);
  HeapRegistry::Global().CheckAll(true);
}

// ---- Item 5: a free needs no heap -------------------------------------------------------------

TEST(ThreadExit, AFreeByAThreadWithoutAHeapTakesNone) {
  // No background reclaimer: a page these frees bring back whole would start it, and its own
  // heap would be counted below as one the frees took.
  testing::ScopedPolicy policy([](Policy* p) { p->background_reclaim = false; });
  std::vector<void*> blocks;
  for (size_t size : {16, 48, 100, 3000, 40 * 1024, 1 << 20}) {
    for (int i = 0; i < 10; ++i) blocks.push_back(Allocate(size));
  }
  static_assert(60 < kHeaplessFreesBeforeHeap, "a few frees: below the threshold (next test)");
  // An idle heap exists (the thread's below could take it over without mapping one).
  std::thread([] { Free(Allocate(64)); }).join();
  const uint32_t heaps_before = HeapRegistry::Global().heap_count();
  const Stats before = GetStats();
  bool had_heap_after = true;
  std::thread([&] {
    for (void* p : blocks) Free(p);
    had_heap_after = ThreadHasHeap();
  }).join();
  EXPECT_FALSE(had_heap_after) << "freeing took a heap";
  const Stats after = GetStats();
  EXPECT_EQ(after.heaps_reused, before.heaps_reused) << "freeing took over an idle heap";
  EXPECT_EQ(HeapRegistry::Global().heap_count(), heaps_before) << "freeing created a heap";
  EXPECT_GE(after.remote_frees - before.remote_frees, 50u) << "the frees went the remote way";
  HeapRegistry::Global().CheckAll(true);
}

// A thread that keeps freeing without allocating (a consumer) takes a heap at its
// kHeaplessFreesBeforeHeap-th free, so that its frees are batched; the free that takes it keeps
// errno, and the heap goes back at thread exit with everything it held pushed.
TEST(ThreadExit, AThreadThatKeepsFreeingTakesAHeap) {
  testing::ScopedPolicy policy([](Policy* p) {
    p->background_reclaim = false;
    p->remote_batch = 32;
  });
  constexpr int kBlocks = 3 * kHeaplessFreesBeforeHeap;
  std::vector<void*> blocks;
  for (int i = 0; i < kBlocks; ++i) blocks.push_back(Allocate(64));
  void* extra = Allocate(64);
  const Stats before = GetStats();
  bool heap_before_threshold = true, heap_at_threshold = false, heap_after_release = true;
  int errno_after = 0;
  uint32_t held = 0;
  std::thread([&] {
    for (int i = 0; i < kBlocks; ++i) {
      if (i == static_cast<int>(kHeaplessFreesBeforeHeap) - 1) {
        heap_before_threshold = ThreadHasHeap();
        errno = 4242;
        Free(blocks[i]);  // the threshold: takes a heap
        errno_after = errno;
        heap_at_threshold = ThreadHasHeap();
        continue;
      }
      Free(blocks[i]);
    }
    for (uint32_t c = 0; c < Heap::kRemoteSlots; ++c) held += ThreadHeap()->remote_chain(c).count;
    // A heap released now is taken again at the next allocation, or after as many frees again.
    ReleaseThreadHeapNow();
    Free(extra);
    heap_after_release = ThreadHasHeap();
  }).join();
  EXPECT_FALSE(heap_after_release) << "a free right after ReleaseThreadHeapNow took a heap";
  EXPECT_FALSE(heap_before_threshold);
  EXPECT_TRUE(heap_at_threshold) << "the threshold's free takes a heap";
  EXPECT_EQ(errno_after, 4242) << "free changed errno";
  EXPECT_GT(held, 0u) << "the frees after it are held back in chains";
  const Stats after = GetStats();
  EXPECT_GT(after.remote_chains, before.remote_chains) << "and pushed in chains";
  EXPECT_EQ(after.remote_frees - before.remote_frees, static_cast<uint64_t>(kBlocks) + 1)
      << "every free reached its page's remote stack by the thread's exit";
  HeapRegistry::Global().CheckAll(true);
}

// ---- Successors: a thread that starts by freeing an exited thread's blocks ---------------------

// A preferred heap that is still claimed is marked wanted; an idle wanted heap goes to the thread
// that prefers it, to others only when no other idle heap is left (never a new heap for it).
TEST(Successor, AWantedIdleHeapIsLeftForTheThreadThatWantsIt) {
  TestHeaps heaps;
  HeapRegistry& registry = HeapRegistry::Global();
  Heap* b = heaps.Acquire();
  Heap* owner = heaps.Acquire();
  heaps.Release(b);
  Heap* got = registry.AcquireHeap(&heaps.source(), owner);  // owner is claimed
  EXPECT_EQ(got, b) << "the idle heap, since the preferred one is not idle";
  EXPECT_TRUE(owner->wanted);
  registry.ReleaseHeap(got);
  heaps.Release(owner);  // idle, released last: owner, then b
  const uint32_t heaps_before = registry.heap_count();
  Heap* other = registry.AcquireHeap(&heaps.source());
  EXPECT_EQ(other, b) << "the heap released last is wanted: another is taken";
  Heap* wanted = registry.AcquireHeap(&heaps.source(), owner);
  EXPECT_EQ(wanted, owner) << "the thread that wants it gets it";
  EXPECT_FALSE(owner->wanted);
  registry.ReleaseHeap(wanted);
  registry.ReleaseHeap(other);
  // Only wanted heaps idle: one of them rather than a new heap.
  Heap* again = registry.AcquireHeap(&heaps.source(), b);  // b is idle: taken, not wanted
  EXPECT_EQ(again, b);
  owner->wanted = true;  // as if another thread waited for it
  Heap* last = registry.AcquireHeap(&heaps.source());
  EXPECT_EQ(last, owner) << "a wanted heap rather than a new one";
  EXPECT_EQ(registry.heap_count(), heaps_before);
  registry.ReleaseHeap(last);
  registry.ReleaseHeap(again);
  HeapRegistry::Global().CheckAll(true);
}

// A thread that allocates 100 blocks of 64 bytes and keeps its heap until HandBack() lets it
// exit (hand its heap back): the predecessor of the Successor tests. With `pin`, it first binds
// itself to those CPUs; `pinned` says whether that worked (if not, it allocates nothing and only
// waits to be let go).
class Predecessor {
 public:
  explicit Predecessor(const cpu_set_t* pin = nullptr)
      : thread_([this, pin] {
          pinned = pin == nullptr || sched_setaffinity(0, sizeof(*pin), pin) == 0;
          if (pinned) {
            for (int i = 0; i < 100; ++i) blocks.push_back(Allocate(64));
            heap = ThreadHeap();
          }
          step_.store(1, std::memory_order_release);
          WaitFor(2);
        }) {
    WaitFor(1);
  }
  // Lets the thread exit, without waiting for it (from any thread).
  void LetGo() { step_.store(2, std::memory_order_release); }
  // Lets the thread exit and joins it (from any thread).
  void HandBack() {
    LetGo();
    thread_.join();
  }
  void Join() { thread_.join(); }

  std::vector<void*> blocks;
  Heap* heap = nullptr;
  bool pinned = false;

 private:
  void WaitFor(int s) {
    while (step_.load(std::memory_order_acquire) < s) std::this_thread::yield();
  }
  std::atomic<int> step_{0};
  std::thread thread_;  // last: it starts once the members above are made
};

// A thread whose first free is of a block of a thread that has not handed its heap back yet
// takes another heap, and moves to that one at its first allocation slow path after it was
// handed back: its frees of the predecessor's blocks are local from then on.
TEST(Successor, AThreadMovesToThePredecessorsHeapOnceItIsHandedBack) {
  testing::ScopedPolicy policy([](Policy* p) { p->background_reclaim = false; });
  Predecessor a;
  const Stats before = GetStats();
  Heap* interim = nullptr;
  const Heap* interim_move_to = nullptr;
  Heap* after = nullptr;
  Heap* block_owner = nullptr;
  std::thread b([&] {
    Free(a.blocks[0]);  // no heap yet: remote, and the predecessor's heap is noted
    void* p = Allocate(64);  // the predecessor still holds its heap: another one
    interim = ThreadHeap();
    interim_move_to = interim->move_to();
    a.HandBack();
    void* q = Allocate(3000);  // a class never used here: a slow path, which moves
    after = ThreadHeap();
    block_owner = PageOf(q)->owner_relaxed();
    Free(p);  // the interim heap's block: remote now
    for (int i = 1; i < 100; ++i) Free(a.blocks[i]);
    Free(q);
    after->CheckInvariants(true);
  });
  b.join();
  EXPECT_NE(interim, a.heap);
  EXPECT_EQ(interim_move_to, a.heap) << "the interim heap was not set to move";
  EXPECT_EQ(after, a.heap) << "the thread did not move to its predecessor's heap";
  EXPECT_EQ(block_owner, a.heap);
  const Stats later = GetStats();
  if (MF2_STATS) EXPECT_EQ(later.heap_moves - before.heap_moves, 1u);
  EXPECT_EQ(later.remote_frees - before.remote_frees, 2u)
      << "after the move, the predecessor's blocks were freed locally (the first free and the "
         "interim heap's block are remote)";
  HeapRegistry::Global().CheckAll(true);
}

// The move window counts slow paths, but not those the carving slow start causes (a class's
// first refills carve little, so a thread that starts on many classes takes several slow paths
// per class): a successor that begins with dozens of classes would otherwise close its window
// before its predecessor has handed its heap back.
TEST(Successor, TheCarvingSlowStartDoesNotCloseTheMoveWindow) {
  testing::ScopedPolicy policy([](Policy* p) { p->background_reclaim = false; });
  Predecessor a;
  Heap* after = nullptr;
  uint64_t slow_paths = 0;
  std::thread b([&] {
    Free(a.blocks[0]);
    std::vector<void*> mine{Allocate(64)};  // the predecessor still holds its heap: another one
    const uint64_t slow_before = ThreadHeap()->stats().Get(HeapStats::k_slow_allocs);
    // 15 blocks of every class from 1 to 8 KiB while the predecessor still holds its heap: each
    // class's first refills are cut short by the carving limit, well over kMoveChecks slow paths.
    for (uint32_t k = SizeToClass(1024); ClassInfo(k).size <= 8192; ++k) {
      for (int i = 0; i < 15; ++i) mine.push_back(Allocate(ClassInfo(k).size));
    }
    slow_paths = ThreadHeap()->stats().Get(HeapStats::k_slow_allocs) - slow_before;
    a.HandBack();
    mine.push_back(Allocate(20000));  // a class not used here yet: a slow path, which moves
    after = ThreadHeap();
    for (void* p : mine) Free(p);
    for (int i = 1; i < 100; ++i) Free(a.blocks[i]);
  });
  b.join();
  if (MF2_STATS) {
    EXPECT_GT(slow_paths, uint64_t{Heap::kMoveChecks}) << "the premise: the window's length";
  }
  EXPECT_EQ(after, a.heap) << "the thread did not move to its predecessor's heap";
  HeapRegistry::Global().CheckAll(true);
}

// A predecessor that is exiting on the successor's CPU: the successor's first allocation finds
// its heap still claimed, yields (MF2_SUCCESSOR_YIELDS, thread_heap.cc), the predecessor runs,
// exits and hands the heap back, and the successor takes that heap instead of another. Both
// threads are pinned to one CPU, so the predecessor runs only when the successor yields (or is
// preempted in the few instructions between letting it go and allocating): without the yields
// the successor took another heap every time, and filled it beside the predecessor's, which it
// was freeing (larson-classic's peak RSS, bench/RESULTS.md). Other processes on that CPU may
// take the yielded time instead of the predecessor, so the tests run up to five rounds.
enum class SuccessorRound { kTookPredecessorsHeap, kTookAnother, kCannotPin };

SuccessorRound RunSuccessorRound() {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  Predecessor a(&one);
  if (!a.pinned) {
    a.HandBack();
    return SuccessorRound::kCannotPin;
  }
  Heap* successor_heap = nullptr;
  bool pinned = false;
  std::thread b([&] {
    pinned = sched_setaffinity(0, sizeof(one), &one) == 0;
    Free(a.blocks[0]);  // no heap yet: the predecessor's heap is noted
    // The predecessor may exit now, but on this CPU it runs only when this thread yields.
    a.LetGo();
    void* p = Allocate(64);
    successor_heap = ThreadHeap();
    for (int i = 1; i < 100; ++i) Free(a.blocks[i]);
    Free(p);
    successor_heap->CheckInvariants(true);
  });
  b.join();
  a.Join();
  EXPECT_TRUE(pinned);
  return successor_heap == a.heap ? SuccessorRound::kTookPredecessorsHeap
                                  : SuccessorRound::kTookAnother;
}

// Up to five rounds (each can be spoiled by a preemption or another process): the first outcome
// other than `usual`, or `usual` if all five gave it.
SuccessorRound FirstRoundOtherThan(SuccessorRound usual) {
  SuccessorRound last = usual;
  for (int round = 0; round < 5 && last == usual; ++round) last = RunSuccessorRound();
  return last;
}

TEST(Successor, AThreadYieldsToAnExitingPredecessorAndTakesItsHeap) {
  testing::ScopedPolicy policy([](Policy* p) { p->background_reclaim = false; });
  const SuccessorRound got = FirstRoundOtherThan(SuccessorRound::kTookAnother);
  if (got == SuccessorRound::kCannotPin) GTEST_SKIP() << "cannot pin a thread to one CPU";
  EXPECT_EQ(got, SuccessorRound::kTookPredecessorsHeap)
      << "in five rounds the successor always took another heap, not its exiting predecessor's";
  HeapRegistry::Global().CheckAll(true);
}

// MF2_SUCCESSOR_YIELDS=0: the successor never gives up the CPU in its first allocation, and takes
// another heap while its predecessor still holds its own.
TEST(Successor, WithoutYieldsASuccessorTakesAnotherHeap) {
  testing::ScopedPolicy policy([](Policy* p) {
    p->background_reclaim = false;
    p->successor_yields = 0;
  });
  const SuccessorRound got = FirstRoundOtherThan(SuccessorRound::kTookPredecessorsHeap);
  if (got == SuccessorRound::kCannotPin) GTEST_SKIP() << "cannot pin a thread to one CPU";
  EXPECT_EQ(got, SuccessorRound::kTookAnother)
      << "in five rounds the successor always found its predecessor's heap handed back";
  HeapRegistry::Global().CheckAll(true);
}

// ---- Item 6: memory freed earlier never makes an allocation fail ------------------------------

#if !defined(MF2_SANITIZER)
// Runs `body` in a forked child whose address space may grow by at most `headroom` bytes beyond
// what is mapped now; returns the numbers the child reports (or fails the test).
template <typename Body>
std::vector<long> InChildUnderLimit(size_t headroom, Body body) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    // What the parent cached when it forked (spans, empty segments, large mappings) would come
    // back to the child under pressure, beyond the limit below: as much as the parent's
    // background decay had not yet returned, which differs from one fork to the next. Give it
    // back first, so that every child starts from the memory in use.
    OsPageSource::Global().ReleaseUnderPressure();
    long vm_pages = 0;
    FILE* f = fopen("/proc/self/statm", "r");
    if (f == nullptr || fscanf(f, "%ld", &vm_pages) != 1) _exit(3);
    fclose(f);
    rlimit lim;
    getrlimit(RLIMIT_AS, &lim);
    lim.rlim_cur =
        static_cast<rlim_t>(vm_pages) * static_cast<rlim_t>(sysconf(_SC_PAGESIZE)) + headroom;
    if (setrlimit(RLIMIT_AS, &lim) != 0) _exit(4);
    long out[8] = {};
    const int n = body(out);
    if (write(fds[1], out, sizeof(long) * static_cast<size_t>(n)) < 0) _exit(5);
    _exit(0);
  }
  close(fds[1]);
  std::vector<long> result;
  long v;
  while (read(fds[0], &v, sizeof(v)) == static_cast<ssize_t>(sizeof(v))) result.push_back(v);
  close(fds[0]);
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  return result;
}

// Blocks of `size` until the allocator says no (nullptr with ENOMEM); returns how many, or -1 if
// the failure did not set ENOMEM. Touches every block (the limit is on address space, but a
// block is only real once written).
void* g_blocks[1 << 16];
long FillUntilNull(size_t size) {
  long n = 0;
  for (; n < static_cast<long>(sizeof(g_blocks) / sizeof(g_blocks[0])); ++n) {
    errno = 0;
    void* p = Allocate(size);
    if (p == nullptr) return errno == ENOMEM ? n : -1;
    memset(p, 1, size);
    g_blocks[n] = p;
  }
  return n;
}
void FreeFirst(long n) {
  for (long i = 0; i < n; ++i) Free(g_blocks[i]);
}

// 32 KiB blocks (page-served, one-slice spans) and blocks of a class whose spans have another
// length: a cached span of one length cannot serve the other, so only giving spans and empty
// segments back to the OS makes room.
constexpr size_t kMid = 32 * 1024;
size_t OtherSpanSize() {
  for (size_t s : {48 * 1024, 40 * 1024, 56 * 1024, 24 * 1024, 20 * 1024}) {
    if (ClassInfo(SizeToClass(s)).slices != ClassInfo(SizeToClass(kMid)).slices) return s;
  }
  return 0;
}
constexpr size_t kHeadroom = size_t{160} << 20;

TEST(MemoryPressure, AfterFreeingEverythingAProcessGetsAsMuchAgain) {
  const size_t other = OtherSpanSize();
  ASSERT_NE(other, 0u);
  // A fresh child: how many blocks of each kind fit under the limit.
  const std::vector<long> fresh = InChildUnderLimit(kHeadroom, [&](long* out) {
    out[0] = FillUntilNull(other);
    return 1;
  });
  // Another child: 32 KiB blocks until the allocator says no, free them all, the same again, then
  // the other class.
  const std::vector<long> reuse = InChildUnderLimit(kHeadroom, [&](long* out) {
    out[0] = FillUntilNull(kMid);
    FreeFirst(out[0]);
    out[1] = FillUntilNull(kMid);
    FreeFirst(out[1]);
    out[2] = FillUntilNull(other);
    FreeFirst(out[2]);
    return 3;
  });
  ASSERT_EQ(fresh.size(), 1u);
  ASSERT_EQ(reuse.size(), 3u);
  const long first = reuse[0], again = reuse[1], other_after = reuse[2], other_fresh = fresh[0];
  std::printf(
      "32 KiB blocks: %ld, after freeing them all: %ld; %zu KiB blocks: %ld fresh, %ld "
      "after freeing 32 KiB blocks\n",
      first, again, other / 1024, other_fresh, other_after);
  ASSERT_GT(first, 0) << "no block fit, or NULL without ENOMEM (-1)";
  ASSERT_GT(other_fresh, 0);
  // The limit is on address space: 160 MiB of 32 KiB blocks is ~5,000.
  EXPECT_GT(first, 2000);
  EXPECT_GE(again * 100, first * 95) << "the same blocks again after freeing them";
  EXPECT_GE(other_after * 100, other_fresh * 95)
      << "blocks of another span length after freeing everything";
}

// The same for large blocks (mapped one by one, outside the page source): after small and mid
// blocks filled the address space and were freed, 1 MiB blocks must get about as far as in a
// fresh process. Needs both the page source's release (spans, empty segments) and the heap's own
// (its cached blocks and spare pages) before the large allocation gives up.
TEST(MemoryPressure, LargeBlocksAfterFreeingSmallOnesGetAsFarAsFresh) {
  constexpr size_t kLarge = size_t{1} << 20;
  const std::vector<long> fresh = InChildUnderLimit(kHeadroom, [&](long* out) {
    out[0] = FillUntilNull(kLarge);
    return 1;
  });
  const std::vector<long> after = InChildUnderLimit(kHeadroom, [&](long* out) {
    out[0] = FillUntilNull(kMid);
    FreeFirst(out[0]);
    out[1] = FillUntilNull(kLarge);
    FreeFirst(out[1]);
    return 2;
  });
  ASSERT_EQ(fresh.size(), 1u);
  ASSERT_EQ(after.size(), 2u);
  std::printf("1 MiB blocks: %ld fresh, %ld after %ld blocks of 32 KiB were freed\n", fresh[0],
              after[1], after[0]);
  ASSERT_GT(fresh[0], 0);
  EXPECT_GE(after[1] * 100, fresh[0] * 95);
}
#endif  // !MF2_SANITIZER

}  // namespace
}  // namespace mf2
