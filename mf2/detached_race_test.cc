// Adoption racing the owner of a detached page, at the exact interleaving points of two C++
// mutants of VERIFICATION.md that only spin models caught before, deterministically:
//
// R4, the owner's drain of a detached page, with an adopter acting inside it. CollectDequeued makes
// a detached page private (where = kNowhere) BEFORE the exchange that takes its remote stack and
// releases its flag: from that exchange on, another thread may win the flag again and queue the
// page on its owner, where a Route P adopter pops it; it must find the page not detached and leave
// it. Made private too late, the page is still kDetached then, the adopter takes it, and the owner
// goes on filing a page it no longer owns.
//
// One OS thread plays the owner `a`, the freers `b` and `c` and the adopter `d`. The adopter's
// turn runs inside a's drain, after the exchange: the test writes into the word 1 of a block
// freed remotely (a use after free), so Page::CollectRemote reports it, and the test's error
// handler is where c frees into the page again (winning its flag, queueing it on a) and d's
// allocation runs Route P's adoption.
//
// R7, the owner's free into its detached page: Heap::FreeDetached takes the page's flag and then
// re-checks that the page is still its own and detached, because between the caller's check and
// that flag an adopter may have taken the page (and released its flag again). Without the
// re-check the owner files another heap's page on its own partial list. The adoption runs in
// Heap::free_detached_hook_for_testing, which FreeDetached calls inside that window.
#include <cstdint>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/check.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/policy.h"
#include "mf2/testing/scoped_policy.h"
#include "mf2/testing/test_heaps.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#define MF2_TEST_ASAN 1
#endif
#endif

namespace mf2 {
namespace {

using testing::ScopedPolicy;
using testing::TestHeaps;

constexpr size_t kSize = 2048;

uint64_t Stat(const Heap* h, HeapStats::Counter c) { return h->stats().Get(c); }

// `freer` frees `p`, a live block of another heap's page, as Heap::Free's remote path does
// (caching off, batch 1: the block goes straight onto the page's remote stack).
void RemoteFree(Heap* freer, void* p) {
  Page* page = PageOf(p);
  if (freer->PushRemote_mt(page, static_cast<Block*>(p))) Heap::QueueWonPage_mt(page);
}

Policy RouteP(Policy* p) {
  p->route = Route::kRouteP;  // every gate open: an idle owner, no pressure, no window
  p->idle_threshold_ns = 0;
  p->adopt_pressure = 0;
  p->adopt_min_remote = 1;
  p->rfr_window_ns = 0;
  p->adopt_partial_gate = false;
  p->reclaim_idle = false;
  p->cache_class_bytes = 0;  // pages, not caches: a's free goes straight to ReturnBlock
  p->remote_batch = 1;
  return *p;
}

struct InsideDrain {
  Heap* c;
  Heap* d;
  Page* page;
  std::vector<void*> c_frees;  // blocks of `page` c frees inside the drain
  void* d_block = nullptr;
  Heap* owner_after = nullptr;  // the page's owner once d's allocation returned
  int reports = 0;
};
InsideDrain* g_inside = nullptr;

// Runs at the report of the written block, inside a's CollectRemote: the page's flag was just
// released by a's exchange.
void AdoptInsideDrain(const ErrorReport& report) {
  InsideDrain* in = g_inside;
  if (++in->reports > 1) return;
  EXPECT_EQ(report.kind, ErrorKind::kDoubleFree);
  for (void* p : in->c_frees) RemoteFree(in->c, p);  // the first push wins the flag again
  in->d_block = in->d->Allocate(kSize);                // Route P: d's slow path tries to adopt
  in->owner_after = in->page->owner_relaxed();
}

TEST(DetachedRaceTest, AnAdopterInsideTheOwnersDrainFindsThePagePrivate) {
  ScopedPolicy policy([](Policy* p) { RouteP(p); });
  TestHeaps heaps;
  Heap* a = heaps.Acquire();
  Heap* b = heaps.Acquire();
  Heap* c = heaps.Acquire();
  Heap* d = heaps.Acquire();

  // a fills page P (detached while adoption is armed), then page Q, its active page, full too.
  std::vector<void*> p_blocks{a->Allocate(kSize)};
  while (PageOf(p_blocks[0])->HasFree()) p_blocks.push_back(a->Allocate(kSize));
  std::vector<void*> q_blocks{a->Allocate(kSize)};
  while (PageOf(q_blocks[0])->HasFree()) q_blocks.push_back(a->Allocate(kSize));
  Page* page = PageOf(p_blocks[0]);
  ASSERT_EQ(page->where(), Page::Where::kDetached);
  ASSERT_TRUE(page->adoptable_detach);
  ASSERT_GE(p_blocks.size(), 4u);

  // b frees one block of P (P queued on a); then the program writes into that freed block.
  void* written = p_blocks[1];
  RemoteFree(b, written);
  ASSERT_TRUE(a->PendingContains(page));
  unsigned char* word1 = static_cast<unsigned char*>(written) + 8;
#ifdef MF2_TEST_ASAN
  __asan_unpoison_memory_region(word1, 8);
#endif
  uint64_t w;
  std::memcpy(&w, word1, 8);
  w ^= uint64_t{1} << 40;
  std::memcpy(word1, &w, 8);

  // a's next allocation of the class: Q is full, so its slow path pops P and drains it; the
  // report of the written block runs c's frees and d's adoption attempt inside that drain.
  InsideDrain inside{c, d, page, {p_blocks[2], p_blocks[3]}};
  g_inside = &inside;
  ErrorHandler previous = SetErrorHandler(&AdoptInsideDrain);
  const uint64_t adopted_before = Stat(d, HeapStats::k_pages_adopted);
  void* a_block = a->Allocate(kSize);
  SetErrorHandler(previous);
  g_inside = nullptr;

  ASSERT_EQ(inside.reports, 1) << "the written block is reported by the drain";
  ASSERT_NE(inside.d_block, nullptr);
  ASSERT_NE(a_block, nullptr);
  EXPECT_EQ(inside.owner_after, a) << "d adopted the page a was draining";
  EXPECT_EQ(Stat(d, HeapStats::k_pages_adopted), adopted_before);
  EXPECT_NE(PageOf(inside.d_block), page);
  EXPECT_EQ(page->owner_relaxed(), a);
  HeapRegistry::Global().CheckAll(true);

  // Everything but the written block (reported, never reused: it stays handed out) goes back.
  d->Free(inside.d_block);
  a->Free(a_block);
  for (void* p : p_blocks) {
    if (p != written && p != p_blocks[2] && p != p_blocks[3]) a->Free(p);
  }
  for (void* p : q_blocks) a->Free(p);
  HeapRegistry::Global().CheckAll(true);
}

struct InsideWindow {
  Heap* c;
  Heap* d;
  void* c_free;
  void* d_block = nullptr;
  Heap* owner_after = nullptr;
  int calls = 0;
};
InsideWindow* g_window = nullptr;

// Inside a's FreeDetached, before its flag CAS: c frees into the page (queueing it on a), and d's
// allocation adopts it (Route P), releasing its flag again before a takes it.
void AdoptInsideWindow(Page* page) {
  InsideWindow* in = g_window;
  if (++in->calls > 1) return;
  RemoteFree(in->c, in->c_free);
  in->d_block = in->d->Allocate(kSize);
  in->owner_after = page->owner_relaxed();
}

TEST(DetachedRaceTest, AnOwnersFreeIntoAPageAdoptedBeforeItsFlagGoesRemote) {
  ScopedPolicy policy([](Policy* p) { RouteP(p); });
  TestHeaps heaps;
  Heap* a = heaps.Acquire();
  Heap* c = heaps.Acquire();
  Heap* d = heaps.Acquire();

  // a fills page P, detached while adoption is armed, and moves on to another page.
  std::vector<void*> p_blocks{a->Allocate(kSize)};
  while (PageOf(p_blocks[0])->HasFree()) p_blocks.push_back(a->Allocate(kSize));
  void* a_other = a->Allocate(kSize);
  Page* page = PageOf(p_blocks[0]);
  ASSERT_EQ(page->where(), Page::Where::kDetached);
  ASSERT_TRUE(page->adoptable_detach);
  ASSERT_GE(p_blocks.size(), 3u);

  // a frees a block of P: FreeDetached; d adopts P inside the window.
  InsideWindow window{c, d, p_blocks[1]};
  g_window = &window;
  Heap::free_detached_hook_for_testing.store(&AdoptInsideWindow, std::memory_order_relaxed);
  const uint64_t detached_frees = Stat(a, HeapStats::k_detached_frees);
  a->Free(p_blocks[0]);
  Heap::free_detached_hook_for_testing.store(nullptr, std::memory_order_relaxed);
  g_window = nullptr;

  ASSERT_EQ(window.calls, 1) << "a's free reached FreeDetached";
  ASSERT_EQ(window.owner_after, d) << "d adopted P inside the window";
  ASSERT_EQ(PageOf(window.d_block), page);
  EXPECT_EQ(page->owner_relaxed(), d);
  EXPECT_EQ(Stat(a, HeapStats::k_detached_frees), detached_frees)
      << "a freed into a page it no longer owns as if it were its own";
  EXPECT_TRUE(d->PendingContains(page)) << "a's free went the remote way, queueing P on d";
  HeapRegistry::Global().CheckAll(true);

  d->Free(window.d_block);
  a->Free(a_other);
  for (size_t i = 2; i < p_blocks.size(); ++i) a->Free(p_blocks[i]);
  HeapRegistry::Global().CheckAll(true);
}

}  // namespace
}  // namespace mf2
