// The page source: spans carved from segments, the bounded cache, memory returned to the OS,
// and empty segments unmapped beyond the retained reserve.
#include "mf2/page_source.h"

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/large.h"
#include "mf2/policy.h"
#include "mf2/testing/scoped_policy.h"

namespace mf2 {
namespace {

class PageSourceTest : public ::testing::Test {
 protected:
  OsPageSource source_;  // a private source: its counters start at zero
  testing::ScopedPolicy policy_{[](Policy* p) {
    p->page_cache_bytes = 4 * kSliceSize;
    p->retained_segments = 1;
  }};
};

// Whether the first page of `p` is resident.
bool Resident(const void* p) {
  unsigned char vec = 0;
  void* page = reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(p) & ~uintptr_t{4095});
  EXPECT_EQ(mincore(page, 4096, &vec), 0);
  return vec & 1;
}

char* SpanStart(Page* head) {
  Segment* s = SegmentOf(head);
  return s->slice_start(s->slice_index(head));
}

TEST_F(PageSourceTest, SpansAreDisjointAndFoundFromAnyInteriorAddress) {
  std::vector<Page*> spans;
  for (uint32_t n = 1; n <= kMaxSlicesPerSpan; ++n) {
    for (int i = 0; i < 5; ++i) {
      Page* p = source_.AllocateSpan(n);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(p->span_slices, n);
      char* start = SpanStart(p);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(start) % kSliceSize, 0u);
      // Every slice of the span maps back to its head in O(1).
      for (uint32_t j = 0; j < n; ++j) {
        EXPECT_EQ(PageOf(start + j * kSliceSize + 123), p);
      }
      spans.push_back(p);
    }
  }
  source_.CheckInvariants();
  Stats st;
  source_.AddTo(&st);
  EXPECT_EQ(st.bytes_in_use_spans, 5 * 36 * kSliceSize);  // 5 x (1 + 2 + ... + 8) slices
  for (Page* p : spans) source_.FreeSpan(p);
  source_.CheckInvariants();
}

TEST_F(PageSourceTest, CacheIsBoundedAndBeyondItMemoryGoesBackToTheOs) {
  std::vector<Page*> spans;
  for (int i = 0; i < 12; ++i) {
    Page* p = source_.AllocateSpan(1);
    memset(SpanStart(p), 1, kSliceSize);  // make it resident
    spans.push_back(p);
  }
  for (Page* p : spans) source_.FreeSpan(p);
  Stats st;
  source_.AddTo(&st);
  EXPECT_EQ(st.bytes_cached_spans, 4 * kSliceSize) << "cache holds exactly its bound";
  EXPECT_EQ(st.spans_returned_to_os, 8u);
  // The spans beyond the bound are no longer resident.
  int resident = 0;
  for (Page* p : spans) resident += Resident(SpanStart(p));
  EXPECT_EQ(resident, 4);
  source_.CheckInvariants();
  // A cached span is reused first (still resident: no page fault for the next owner).
  Page* again = source_.AllocateSpan(1);
  EXPECT_TRUE(Resident(SpanStart(again)));
  source_.FreeSpan(again);
}

TEST_F(PageSourceTest, LoweringTheCacheBoundTrimsTheCacheOnTheNextFree) {
  // Found by heap_ops_fuzz: a policy change left more cached than the new bound allowed.
  std::vector<Page*> spans;
  for (int i = 0; i < 5; ++i) spans.push_back(source_.AllocateSpan(1));
  for (int i = 0; i < 4; ++i) source_.FreeSpan(spans[i]);  // cache full at 4 slices
  testing::ScopedPolicy lower([](Policy* p) { p->page_cache_bytes = kSliceSize; });
  source_.FreeSpan(spans[4]);
  Stats st;
  source_.AddTo(&st);
  EXPECT_LE(st.bytes_cached_spans, kSliceSize);
  source_.CheckInvariants();
}

// What ReturnHook saw: every span on its way back to the OS, and whether the lock was free.
struct ReturnsSeen {
  int calls = 0;
  int with_lock_free = 0;
  int invariants_checked = 0;
};
ReturnsSeen g_returns;

void CountReturn(OsPageSource* source, Page* span) {
  ++g_returns.calls;
  if (!source->LockFreeForTesting()) return;
  ++g_returns.with_lock_free;
  // Meanwhile the span is the page source's, not a heap's, and the books balance.
  EXPECT_TRUE(span->hold == Page::Hold::kReturning && span->span_slices > 0);
  source->CheckInvariants();
  ++g_returns.invariants_checked;
}

// A madvise takes tens of microseconds and a decay may return a thousand spans: the lock that
// every span allocation and free takes is not held meanwhile (page_source.h).
TEST_F(PageSourceTest, MemoryGoesBackToTheOsWithoutTheLock) {
  std::vector<Page*> spans;
  for (int i = 0; i < 8; ++i) spans.push_back(source_.AllocateSpan(1));
  g_returns = {};
  OsPageSource::return_hook_for_testing.store(&CountReturn, std::memory_order_relaxed);
  for (Page* p : spans) source_.FreeSpan(p);  // four cached, four beyond the bound returned
  const ReturnsSeen by_free = g_returns;
  source_.ReleaseCache();  // and the four cached
  OsPageSource::return_hook_for_testing.store(nullptr, std::memory_order_relaxed);
  EXPECT_EQ(by_free.calls, 4);
  EXPECT_EQ(g_returns.calls, 8);
  EXPECT_EQ(g_returns.with_lock_free, 8) << "madvise ran under the page source's lock";
  EXPECT_EQ(g_returns.invariants_checked, 8);
  Stats st;
  source_.AddTo(&st);
  EXPECT_EQ(st.spans_returned_to_os, 8u);
  EXPECT_EQ(st.bytes_cached_spans, 0u);
  EXPECT_EQ(st.bytes_in_use_spans, 0u);
  source_.CheckInvariants();
}

// The decay returns what it trims the same way.
TEST_F(PageSourceTest, TheDecayReturnsMemoryWithoutTheLock) {
  testing::ScopedPolicy decay([](Policy* p) {
    p->page_cache_decay_ns = 1'000'000'000;
    p->page_cache_excess_decay_ns = 0;
  });
  std::vector<Page*> spans;
  for (int i = 0; i < 3; ++i) spans.push_back(source_.AllocateSpan(2));
  for (Page* p : spans) source_.FreeSpan(p);  // two cached (the bound is 4 slices), one returned
  g_returns = {};
  OsPageSource::return_hook_for_testing.store(&CountReturn, std::memory_order_relaxed);
  const uint64_t t0 = 1'000'000'000'000;
  source_.Decay(t0);                  // starts the period
  source_.Decay(t0 + 2'000'000'000);  // nothing was taken: all of it goes
  OsPageSource::return_hook_for_testing.store(nullptr, std::memory_order_relaxed);
  EXPECT_GT(g_returns.calls, 0);
  EXPECT_EQ(g_returns.with_lock_free, g_returns.calls) << "madvise ran under the lock";
  Stats st;
  source_.AddTo(&st);
  EXPECT_EQ(st.bytes_cached_spans, 0u);
  EXPECT_EQ(st.spans_decayed, static_cast<uint64_t>(g_returns.calls));
  source_.CheckInvariants();
}

// fork() while another thread returns a span without the lock: the child has no such thread,
// so ChildAfterFork returns the span itself (fork.cc calls it on the global source).
Page* g_forked_span = nullptr;
int g_child_status = -1;

void ForkWhileReturning(OsPageSource* source, Page* span) {
  if (g_forked_span != nullptr) return;  // the first span only
  g_forked_span = span;
  // PrepareFork takes the lock: were it held here, that would never return.
  ASSERT_TRUE(source->LockFreeForTesting()) << "madvise ran under the page source's lock";
  source->PrepareFork();
  const pid_t pid = fork();
  if (pid == 0) {
    source->ChildAfterFork();
    Stats st;
    source->AddTo(&st);
    source->CheckInvariants();  // aborts the child if the books do not balance
    // The span's slices are free again and its memory back with the OS.
    _exit(span->hold != Page::Hold::kReturning && span->span_slices == 0 &&
                  st.spans_returned_to_os == 1
              ? 0
              : 1);
  }
  source->ParentAfterFork();
  ASSERT_GT(pid, 0);
  ASSERT_EQ(waitpid(pid, &g_child_status, 0), pid);
}

TEST_F(PageSourceTest, AForkChildReturnsTheSpansOtherThreadsWereReturning) {
  std::vector<Page*> spans;
  for (int i = 0; i < 5; ++i) spans.push_back(source_.AllocateSpan(1));
  g_forked_span = nullptr;
  OsPageSource::return_hook_for_testing.store(&ForkWhileReturning, std::memory_order_relaxed);
  for (Page* p : spans) source_.FreeSpan(p);  // the fifth goes beyond the bound: returned
  OsPageSource::return_hook_for_testing.store(nullptr, std::memory_order_relaxed);
  ASSERT_NE(g_forked_span, nullptr);
  ASSERT_TRUE(WIFEXITED(g_child_status)) << "the child died: " << g_child_status;
  EXPECT_EQ(WEXITSTATUS(g_child_status), 0);
  source_.CheckInvariants();  // and the parent finished its own return
  Stats st;
  source_.AddTo(&st);
  EXPECT_EQ(st.spans_returned_to_os, 1u);
}

size_t CachedBytes(OsPageSource* source) {
  Stats st;
  source->AddTo(&st);
  return st.bytes_cached_spans;
}

// The cache decays in two tiers (page_source.h): what it holds beyond its reserve, an eighth of
// the spans in use, goes back once it stayed unused for the short period; the reserve only after
// the whole one. Decay takes the time as an argument: no test here waits.
// The two decay tiers at their default periods (1 s, 20 ms), driven with explicit times.
class TieredDecayTest : public PageSourceTest {
 protected:
  static constexpr uint64_t kMs = 1'000'000;
  static constexpr uint64_t t0 = 1'000'000 * kMs;
  testing::ScopedPolicy decay_{[](Policy* p) {
    p->page_cache_bytes = 64 * kSliceSize;
    p->page_cache_decay_ns = 1'000'000'000;
    p->page_cache_excess_decay_ns = 20'000'000;
  }};
};

TEST_F(TieredDecayTest, TheExcessOverTheReserveDecaysAfterTheShortPeriod) {
  std::vector<Page*> in_use, spans;
  for (int i = 0; i < 16; ++i) in_use.push_back(source_.AllocateSpan(1));  // reserve: 2 slices
  for (int i = 0; i < 8; ++i) spans.push_back(source_.AllocateSpan(1));
  for (Page* p : spans) source_.FreeSpan(p);
  ASSERT_EQ(CachedBytes(&source_), 8 * kSliceSize);
  EXPECT_EQ(source_.Decay(t0), 20 * kMs) << "both periods start; the short one ends first";
  EXPECT_EQ(CachedBytes(&source_), 8 * kSliceSize);
  // Seven spans taken and given back within the short period: one stayed unused all along.
  for (int i = 0; i < 7; ++i) spans[i] = source_.AllocateSpan(1);
  for (int i = 0; i < 7; ++i) source_.FreeSpan(spans[i]);
  EXPECT_EQ(source_.Decay(t0 + 20 * kMs), 20 * kMs);
  EXPECT_EQ(CachedBytes(&source_), 7 * kSliceSize) << "only what nobody took goes back";
  // Nobody takes any for the next short period: all but the reserve goes back.
  source_.Decay(t0 + 40 * kMs);
  EXPECT_EQ(CachedBytes(&source_), 2 * kSliceSize) << "the reserve: an eighth of 16 slices";
  source_.Decay(t0 + 60 * kMs);
  EXPECT_EQ(CachedBytes(&source_), 2 * kSliceSize) << "the reserve waits for the whole period";
  // The whole period returns what stayed cached all of it (one span: the others were taken).
  // Within its reserve, the cache schedules only the whole period.
  EXPECT_EQ(source_.Decay(t0 + 1000 * kMs), 1000 * kMs);
  EXPECT_EQ(CachedBytes(&source_), 1 * kSliceSize);
  EXPECT_EQ(source_.Decay(t0 + 2000 * kMs), 0u) << "an empty cache schedules nothing";
  EXPECT_EQ(CachedBytes(&source_), 0u);
  Stats st;
  source_.AddTo(&st);
  EXPECT_EQ(st.spans_decayed, 8u);
  source_.CheckInvariants();
  for (Page* p : in_use) source_.FreeSpan(p);
}

// The short period runs only while there is an excess to watch: a cache within its reserve
// schedules the whole period alone (the reclaimer sleeps that long), and the free that takes the
// cache past the reserve asks for the reclaimer (FreeSpan notifies it: decay_wake_test), whose
// next Decay starts a short period.
TEST_F(TieredDecayTest, TheShortPeriodRunsOnlyWhileTheCacheExceedsItsReserve) {
  std::vector<Page*> in_use, spans;
  for (int i = 0; i < 24; ++i) in_use.push_back(source_.AllocateSpan(1));  // reserve: 3 slices
  for (int i = 0; i < 2; ++i) spans.push_back(source_.AllocateSpan(1));
  for (Page* p : spans) source_.FreeSpan(p);
  ASSERT_EQ(CachedBytes(&source_), 2 * kSliceSize);
  EXPECT_EQ(source_.Decay(t0), 1000 * kMs) << "within the reserve: no short period";
  EXPECT_EQ(source_.Decay(t0 + 500 * kMs), 500 * kMs);
  EXPECT_EQ(CachedBytes(&source_), 2 * kSliceSize);
  // Eight in-use spans come back: the reserve drops to 2 slices, the cache holds 10.
  for (int i = 0; i < 8; ++i) {
    source_.FreeSpan(in_use.back());
    in_use.pop_back();
  }
  ASSERT_EQ(CachedBytes(&source_), 10 * kSliceSize);
  EXPECT_EQ(source_.Decay(t0 + 510 * kMs), 20 * kMs) << "past the reserve: a short period";
  EXPECT_EQ(CachedBytes(&source_), 10 * kSliceSize) << "a period starts; nothing goes yet";
  EXPECT_EQ(source_.Decay(t0 + 530 * kMs), 470 * kMs) << "back within the reserve: it stops";
  EXPECT_EQ(CachedBytes(&source_), 2 * kSliceSize);
  source_.CheckInvariants();
  for (Page* p : in_use) source_.FreeSpan(p);
}

// Without the short period (0, or not shorter than the whole one) the excess waits for the whole
// period too, as every cached span did before the tiers.
TEST_F(PageSourceTest, WithoutTheShortPeriodTheExcessDecaysWithTheRest) {
  for (const uint64_t excess : {uint64_t{0}, uint64_t{1'000'000'000}, uint64_t{5'000'000'000}}) {
    SCOPED_TRACE(excess);
    OsPageSource source;
    testing::ScopedPolicy decay([excess](Policy* p) {
      p->page_cache_bytes = 64 * kSliceSize;
      p->page_cache_decay_ns = 1'000'000'000;
      p->page_cache_excess_decay_ns = excess;
    });
    std::vector<Page*> spans;
    for (int i = 0; i < 8; ++i) spans.push_back(source.AllocateSpan(1));
    for (Page* p : spans) source.FreeSpan(p);
    EXPECT_EQ(source.Decay(1'000'000'000), 1'000'000'000u);
    EXPECT_EQ(source.Decay(1'500'000'000), 500'000'000u);
    EXPECT_EQ(CachedBytes(&source), 8 * kSliceSize);
    EXPECT_EQ(source.Decay(2'000'000'000), 0u);
    EXPECT_EQ(CachedBytes(&source), 0u);
    source.CheckInvariants();
  }
}

TEST_F(PageSourceTest, EmptySegmentsBeyondTheReserveAreUnmapped) {
  std::vector<Page*> spans;
  // Three segments' worth of 8-slice spans (7 per segment: 63 usable slices).
  for (int i = 0; i < 21; ++i) spans.push_back(source_.AllocateSpan(8));
  Stats st;
  source_.AddTo(&st);
  EXPECT_EQ(st.segments_mapped, 3u);
  for (Page* p : spans) source_.FreeSpan(p);
  source_.ReleaseCache();
  Stats after;
  source_.AddTo(&after);
  EXPECT_EQ(after.segments_unmapped, 2u) << "one empty segment is retained";
  EXPECT_EQ(after.bytes_in_use_spans, 0u);
  EXPECT_EQ(after.bytes_cached_spans, 0u);
  source_.CheckInvariants();
}

TEST_F(PageSourceTest, SegmentHeadersAndFreeSlicesAreNotPages) {
  Page* p = source_.AllocateSpan(2);
  Segment* s = SegmentOf(p);
  EXPECT_EQ(PageOf(s), nullptr) << "slice 0 is the header";
  EXPECT_TRUE(InSegment(s));
  int on_stack = 0;
  EXPECT_EQ(PageOf(&on_stack), nullptr);
  EXPECT_FALSE(InSegment(&on_stack));
  // The segment map covers the 47-bit user address space: its last entry and every address
  // above it (which would index past the map) are in no segment.
  for (uintptr_t a : {kUserAddressLimit - 1, kUserAddressLimit, uintptr_t{0xffff800000000000},
                      ~uintptr_t{0}}) {
    EXPECT_FALSE(InSegment(reinterpret_cast<void*>(a))) << a;
    EXPECT_EQ(PageOf(reinterpret_cast<void*>(a)), nullptr) << a;
  }
  source_.FreeSpan(p);
}

// Slice tables are coloured by the segment's address (segment.h): every slice of a span maps to
// the entry of its segment's own table, the table sits at colour * 1 KiB, and segments
// next to each other in the address space use different colours (so different L1 sets).
TEST_F(PageSourceTest, SliceTablesAreColouredBySegmentAddress) {
  std::vector<Page*> spans;
  std::vector<Segment*> segments;
  for (int i = 0; i < 21; ++i) {  // three segments' worth of 8-slice spans
    Page* p = source_.AllocateSpan(8);
    spans.push_back(p);
    Segment* s = SegmentOf(p->start());
    if (segments.empty() || segments.back() != s) segments.push_back(s);
    for (uint32_t j = 0; j < 8; ++j) {
      const uintptr_t a = reinterpret_cast<uintptr_t>(p->start()) + j * kSliceSize + 8;
      const uint32_t slice = static_cast<uint32_t>((a >> kSliceShift) % kSlicesPerSegment);
      ASSERT_EQ(SliceOf(a), &s->slices()[slice]) << "slice " << slice;
      EXPECT_EQ(SliceOf(a)->head(), slice - j) << "every slice names its span's first slice";
    }
  }
  ASSERT_EQ(segments.size(), 3u);
  std::set<uintptr_t> offsets;
  for (Segment* s : segments) {
    const uintptr_t base = reinterpret_cast<uintptr_t>(s);
    const uintptr_t colour = (base >> kSegmentShift) % kSliceColours;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(s->slices()), base + colour * kSliceTableBytes);
    offsets.insert(reinterpret_cast<uintptr_t>(s->slices()) - base);
  }
  for (size_t i = 1; i < segments.size(); ++i) {
    const uintptr_t d = reinterpret_cast<uintptr_t>(segments[i]) >> kSegmentShift;
    const uintptr_t e = reinterpret_cast<uintptr_t>(segments[i - 1]) >> kSegmentShift;
    if (d - e < kSliceColours || e - d < kSliceColours) {
      EXPECT_NE(SliceTableOffset(reinterpret_cast<uintptr_t>(segments[i])),
                SliceTableOffset(reinterpret_cast<uintptr_t>(segments[i - 1])))
          << "segments within 32 of each other have different colours";
    }
  }
  for (Page* p : spans) source_.FreeSpan(p);
  source_.CheckInvariants();
}

// A segment mapped over the range of a large block that was freed and unmapped forgets the block
// (large.h LargeForgetFreedRange): otherwise a misuse of that address after the segment is gone
// again was reported as a double free of a large block that no longer existed, where it is a
// foreign pointer (found by heap_ops_fuzz in CI; its reproducer is
// fuzz/corpus/heap_ops_fuzz/crash_freed_large_record_outlives_its_range).
TEST_F(PageSourceTest, ASegmentMappedOverAFreedLargeBlockForgetsIt) {
  const size_t len = size_t{32} << 20;  // above a quarter of the cache bound: unmapped when freed
  void* block = LargeAllocate(len, kMinAlign);
  ASSERT_NE(block, nullptr);
  const auto a = reinterpret_cast<uintptr_t>(block);
  ASSERT_TRUE(LargeFree(block));
  ASSERT_EQ(LargeDiagnose(block).kind, LargeDiagnosis::kFreedRecently);
  // Mappings are placed top-down: the segments mapped next fill the 32 MiB hole from its top, and
  // one of the first eight or so covers the block's start.
  std::vector<Page*> spans;
  bool covered = false;
  for (int i = 0; i < 16 * 7 && !covered; ++i) {
    Page* p = source_.AllocateSpan(kMaxSlicesPerSpan);
    ASSERT_NE(p, nullptr);
    spans.push_back(p);
    covered = a - reinterpret_cast<uintptr_t>(SegmentOf(p)) < kSegmentSize;
  }
  if (covered) {
    EXPECT_EQ(int{LargeDiagnose(block).kind}, int{LargeDiagnosis::kUnknown})
        << "a segment of MF2's own lies there now, not a freed large block";
  }
  for (Page* p : spans) source_.FreeSpan(p);
  source_.ReleaseCache();
  if (!covered) GTEST_SKIP() << "the kernel placed no segment over the freed block";
}

}  // namespace
}  // namespace mf2
