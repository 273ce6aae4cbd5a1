#include "mf2/page_source.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <new>

#include "mf2/base.h"
#include "mf2/block.h"
#include "mf2/large.h"
#include "mf2/policy.h"
#include "mf2/reclaimer.h"

namespace mf2 {
namespace {

constexpr uint64_t kHeaderBit = 1;

uint64_t RunMask(uint32_t first, uint32_t slices) {
  uint64_t ones = slices == 64 ? ~uint64_t{0} : (uint64_t{1} << slices) - 1;
  return ones << first;
}

// First slice index of a run of `slices` free slices in `used`, or 0 if none (slice 0 is the
// header and never free).
uint32_t FindRun(uint64_t used, uint32_t slices) {
  for (uint32_t i = 1; i + slices <= kSlicesPerSegment; ++i) {
    if ((used & RunMask(i, slices)) == 0) return i;
  }
  return 0;
}

}  // namespace

namespace {
// Never destroyed: blocks are freed by static destructors and after them.
MF2_CONSTINIT StaticObject<OsPageSource> g_os_source;
}  // namespace

OsPageSource& OsPageSource::Global() { return g_os_source.value; }

std::atomic<OsPageSource::ReturnHook> OsPageSource::return_hook_for_testing{nullptr};

void OsPageSource::Unlink(Segment* s) {
  if (s->prev != nullptr) {
    s->prev->next = s->next;
  } else {
    segments_ = s->next;
  }
  if (s->next != nullptr) {
    s->next->prev = s->prev;
  } else {
    segments_tail_ = s->prev;
  }
  s->next = s->prev = nullptr;
}

void OsPageSource::PushFront(Segment* s) {
  s->prev = nullptr;
  s->next = segments_;
  if (segments_ != nullptr) {
    segments_->prev = s;
  } else {
    segments_tail_ = s;
  }
  segments_ = s;
}

void OsPageSource::PushBack(Segment* s) {
  s->next = nullptr;
  s->prev = segments_tail_;
  if (segments_tail_ != nullptr) {
    segments_tail_->next = s;
  } else {
    segments_ = s;
  }
  segments_tail_ = s;
}

Segment* OsPageSource::MapSegment() {
  // The canary key exists before the first block does (block.h).
  (void)CanaryKey();
  // Map enough to contain an aligned segment and trim the rest.
  size_t map_size = 2 * kSegmentSize - 4096;
  void* raw = mmap(nullptr, map_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  uintptr_t base = reinterpret_cast<uintptr_t>(raw);
  uintptr_t aligned = (base + kSegmentSize - 1) & ~(kSegmentSize - 1);
  if (aligned > base) munmap(raw, aligned - base);
  uintptr_t end = base + map_size;
  if (end > aligned + kSegmentSize) {
    munmap(reinterpret_cast<void*>(aligned + kSegmentSize), end - (aligned + kSegmentSize));
  }
  MF2_CHECK(aligned + kSegmentSize <= kUserAddressLimit, "segment above the 47-bit limit");
  Segment* s = new (reinterpret_cast<void*>(aligned)) Segment();
  MF2_CHECK(reinterpret_cast<uintptr_t>(s->slice_area) == aligned &&
                reinterpret_cast<uintptr_t>(s->slices()) == aligned + SliceTableOffset(aligned),
            "the slice area starts at the segment's first byte (SliceOf)");
  s->cookie = kSegmentCookie;
  s->used_slices = kHeaderBit;
  PushFront(s);
  ++segments_mapped_;
  ++empty_segments_;
  segment_map::Insert(s);
  // The range may have held large blocks freed and unmapped since: they are no longer
  // remembered there (lock order: page source, then large table).
  LargeForgetFreedRange(s, kSegmentSize);
  return s;
}

Page* OsPageSource::CarveSpan(Segment* s, uint32_t first, uint32_t slices) {
  if (s->used_slices == kHeaderBit) --empty_segments_;
  s->used_slices |= RunMask(first, slices);
  if (s->used_slices == ~uint64_t{0}) {  // full: behind every segment with a free slice
    Unlink(s);
    PushBack(s);
  }
  Page* head = &s->pages[first];
  head->MakeSpan(slices, s->slice_start(first), &s->slices()[first], static_cast<uint8_t>(first));
  return head;
}

// First fit in the first kMaxSegmentScan segments with a free slice (all of them when
// `exhaustive`); nullptr when none has a run of `slices` free slices.
Page* OsPageSource::CarveFromSegments(uint32_t slices, bool exhaustive) {
  int scanned = 0;
  for (Segment* s = segments_; s != nullptr && (exhaustive || scanned < kMaxSegmentScan);
       s = s->next, ++scanned) {
    if (s->used_slices == ~uint64_t{0}) break;  // only full segments from here on
    uint32_t first = FindRun(s->used_slices, slices);
    if (first != 0) return CarveSpan(s, first, slices);
  }
  return nullptr;
}

Page* OsPageSource::AllocateSpan(uint32_t slices) {
  MF2_CHECK(slices >= 1 && slices <= kMaxSlicesPerSpan, "span length out of range");
  MutexLock lock(&mu_);
  Page* head = cache_[slices];
  if (head != nullptr) {
    cache_[slices] = head->next;
    head->next = nullptr;
    head->hold = Page::Hold::kHeap;
    cached_bytes_ -= slices * kSliceSize;
    CacheLowered();
  } else {
    head = CarveFromSegments(slices, /*exhaustive=*/false);
    if (head == nullptr) {
      Segment* s = MapSegment();
      if (s == nullptr) {
        // The OS refused: give back what is cached (spans of other lengths, empty segments, large
        // mappings) and retry before failing, so memory freed earlier is never what makes an
        // allocation fail.
        ++pressure_events_;
        ReleaseLocked(/*keep_retained=*/false);
        LargeReleaseCache();  // lock order: page source, then large table
        head = CarveFromSegments(slices, /*exhaustive=*/true);
        if (head == nullptr && (s = MapSegment()) == nullptr) {
          errno = ENOMEM;
          return nullptr;
        }
      }
      if (head == nullptr) head = CarveSpan(s, 1, slices);
    }
  }
  in_use_bytes_ += slices * kSliceSize;
  NoteSpanBytes(static_cast<int64_t>(slices * kSliceSize));
  return head;
}

// madvise(MADV_DONTNEED) of the span's bytes: the next touch faults in a zero page.
void OsPageSource::ReturnMemory(Page* head) {
  Segment* s = SegmentOf(head);
  madvise(s->slice_start(s->slice_index(head)), head->span_slices * kSliceSize, MADV_DONTNEED);
}

void OsPageSource::Retire(Page* head, Page** batch) {
  head->hold = Page::Hold::kReturning;
  head->next = *batch;
  *batch = head;
  returning_bytes_ += head->span_slices * kSliceSize;
}

void OsPageSource::ReturnToOs(Page* batch) {
  if (batch == nullptr) return;
  // No other thread reads or writes a retired span's fields but under the lock, and then only
  // reads them (CheckInvariants, ForEachSpanInUse): this thread may read them without it.
  for (Page* p = batch; p != nullptr; p = p->next) {
    // Relaxed: a test sets the hook before the frees it watches, on the same thread.
    if (ReturnHook hook = return_hook_for_testing.load(std::memory_order_relaxed)) hook(this, p);
    ReturnMemory(p);
  }
  MutexLock lock(&mu_);
  while (batch != nullptr) {
    Page* p = batch;
    batch = p->next;
    FreeReturned(p);
  }
}

void OsPageSource::ReturnToOsLocked(Page* batch) {
  while (batch != nullptr) {
    Page* p = batch;
    batch = p->next;
    ReturnMemory(p);
    FreeReturned(p);
  }
}

void OsPageSource::FinishReturnsLocked() {
  Page* batch = nullptr;
  ForEachSpanHead([&batch](Page* p) {
    if (p->hold == Page::Hold::kReturning) {  // relinked: its returner's list is gone with it
      p->next = batch;
      batch = p;
    }
  });
  ReturnToOsLocked(batch);
}

void OsPageSource::FreeReturned(Page* head) {
  Segment* s = SegmentOf(head);
  uint32_t first = s->slice_index(head);
  uint32_t slices = head->span_slices;
  returning_bytes_ -= slices * kSliceSize;
  ++spans_returned_;
  head->next = nullptr;
  head->hold = Page::Hold::kHeap;  // the next carve hands it to a heap
  head->UnmakeSpan();
  const bool was_full = s->used_slices == ~uint64_t{0};
  s->used_slices &= ~RunMask(first, slices);
  if (was_full) {  // has a free slice again: to the front
    Unlink(s);
    PushFront(s);
  }
  if (s->used_slices == kHeaderBit) {
    ++empty_segments_;
    MaybeUnmap(s);
  }
}

void OsPageSource::MaybeUnmap(Segment* s) {
  if (empty_segments_ <= GetPolicy().retained_segments) return;
  UnmapSegment(s);
}

void OsPageSource::UnmapSegment(Segment* s) {
  Unlink(s);
  --empty_segments_;
  ++segments_unmapped_;
  segment_map::Erase(s);
  // Free spans stay poisoned for ASan; the next mapping at this address must not inherit that.
  UnpoisonMemory(s, kSegmentSize);
  munmap(s, kSegmentSize);
}

void OsPageSource::FreeSpan(Page* head) {
  MF2_CHECK(!head->in_use() && head->span_slices > 0, "FreeSpan of a span still in use");
  uint32_t slices = head->span_slices;
  Page* batch = nullptr;
  const bool notify = FreeSpanLocked(head, slices, &batch);
  ReturnToOs(batch);
  if (notify) {
    // The cache has something to decay again (it was empty), or it went past its reserve with
    // the short tier stopped: a reclaimer asleep for good, or for the whole period, must look
    // (after the unlock; it is woken for this, never started).
    reclaimer::NotifyIfRunning();
  }
}

bool OsPageSource::FreeSpanLocked(Page* head, uint32_t slices, Page** batch) {
  MutexLock lock(&mu_);
  in_use_bytes_ -= slices * kSliceSize;
  NoteSpanBytes(-static_cast<int64_t>(slices * kSliceSize));
  // The bound may have been lowered since spans were cached: trim to it first.
  cache_bound_ = GetPolicy().page_cache_bytes;
  TrimCacheTo(cache_bound_, batch);
  bool first = false;
  if (cached_bytes_ + slices * kSliceSize > cache_bound_) {
    Retire(head, batch);  // the reserve shrank: the cache may exceed it now
  } else {
    head->hold = Page::Hold::kCache;
    head->next = cache_[slices];
    cache_[slices] = head;
    first = cached_bytes_ == 0;
    cached_bytes_ += slices * kSliceSize;
  }
  return first || ExcessUnscheduled();
}

// The short period in force, or 0 when the tier is off: 0, or not shorter than the whole
// cache's period (then the excess decays with the rest).
static uint64_t ShortPeriod(const Policy& policy) {
  return policy.page_cache_excess_decay_ns < policy.page_cache_decay_ns
             ? policy.page_cache_excess_decay_ns
             : 0;
}

bool OsPageSource::ExcessUnscheduled() const {
  return ShortPeriod(GetPolicy()) != 0 && !excess_decay_.Scheduled() &&
         cached_bytes_ > CacheReserve();
}

uint32_t OsPageSource::TrimCacheTo(size_t keep, Page** batch) {
  uint32_t retired = 0;
  for (uint32_t n = kMaxSlicesPerSpan; n >= 1 && cached_bytes_ > keep; --n) {
    while (cache_[n] != nullptr && cached_bytes_ > keep) {
      Page* victim = cache_[n];
      cache_[n] = victim->next;
      cached_bytes_ -= n * kSliceSize;
      Retire(victim, batch);
      ++retired;
    }
  }
  CacheLowered();
  return retired;
}

uint64_t OsPageSource::Decay(uint64_t now_ns) {
  const Policy& policy = GetPolicy();
  const uint64_t period = policy.page_cache_decay_ns;
  const uint64_t excess_period = ShortPeriod(policy);
  Page* batch = nullptr;
  uint64_t wait = 0;
  {
    MutexLock lock(&mu_);
    if (period == 0) return 0;
    uint32_t retired = 0;
    if (decay_.Due(now_ns)) {
      // What stayed cached the whole period: nobody needed it.
      retired += TrimCacheTo(cached_bytes_ - decay_.Unused(cached_bytes_), &batch);
      decay_.Restart(now_ns, period, cached_bytes_);
    }
    // Second, so that a cache the whole period emptied schedules no short one either.
    if (excess_period != 0 && excess_decay_.Due(now_ns)) {
      // What stayed cached the whole short period, as far as the cache holds more than its
      // reserve. (TrimCacheTo retires whole spans, so the cache may end a span below it.) A
      // stopped clock is due and releases nothing: this starts its period.
      const size_t reserve = CacheReserve();
      if (cached_bytes_ > reserve) {
        const size_t unused = excess_decay_.Unused(cached_bytes_);
        retired += TrimCacheTo(cached_bytes_ - std::min(unused, cached_bytes_ - reserve),
                               &batch);
      }
      // Within the reserve nothing is left for the short tier: it stops, and the reclaimer
      // sleeps for the whole period, until FreeSpan takes the cache past the reserve again
      // (ExcessUnscheduled) and wakes it to start a short period.
      if (cached_bytes_ > reserve) {
        excess_decay_.Restart(now_ns, excess_period, cached_bytes_);
      } else {
        excess_decay_.Stop();
      }
    }
    spans_decayed_ += retired;
    wait = EarlierWait(decay_.NextIn(now_ns),
                       excess_period != 0 ? excess_decay_.NextIn(now_ns) : 0);
  }
  ReturnToOs(batch);
  return wait;
}

void OsPageSource::ReleaseCache() {
  Page* batch = nullptr;
  {
    MutexLock lock(&mu_);
    TrimCacheTo(0, &batch);
  }
  ReturnToOs(batch);
}

void OsPageSource::ReleaseUnderPressure() {
  Page* batch = nullptr;
  {
    MutexLock lock(&mu_);
    ++pressure_events_;
    TrimCacheTo(0, &batch);
  }
  ReturnToOs(batch);
  {
    MutexLock lock(&mu_);
    UnmapEmptySegments();
  }
  LargeReleaseCache();
}

void OsPageSource::ReleaseLocked(bool keep_retained) {
  Page* batch = nullptr;
  TrimCacheTo(0, &batch);
  ReturnToOsLocked(batch);
  if (!keep_retained) UnmapEmptySegments();
}

void OsPageSource::UnmapEmptySegments() {
  for (Segment* s = segments_; s != nullptr;) {
    Segment* next = s->next;
    if (s->used_slices == kHeaderBit) UnmapSegment(s);
    s = next;
  }
}

void OsPageSource::AddTo(Stats* st) {
  MutexLock lock(&mu_);
  st->segments_mapped += segments_mapped_;
  st->segments_unmapped += segments_unmapped_;
  st->spans_returned_to_os += spans_returned_;
  st->bytes_in_use_spans += in_use_bytes_;
  st->bytes_cached_spans += cached_bytes_;
  st->memory_pressure_events += pressure_events_;
  st->spans_decayed += spans_decayed_;
}

template <typename Fn>
void OsPageSource::ForEachSpanHead(Fn fn) {
  for (Segment* s = segments_; s != nullptr; s = s->next) {
    for (uint32_t i = 1; i < kSlicesPerSegment;) {
      Page* p = &s->pages[i];
      if ((s->used_slices >> i) & 1 && p->span_slices > 0) {
        fn(p);
        i += p->span_slices;
      } else {
        ++i;
      }
    }
  }
}

void OsPageSource::ForEachSpanInUse(void (*fn)(Page*, void*), void* arg) {
  MutexLock lock(&mu_);
  ForEachSpanHead([fn, arg](Page* p) {
    if (p->hold == Page::Hold::kHeap) fn(p, arg);
  });
}

void OsPageSource::CheckInvariants() {
  MutexLock lock(&mu_);
  size_t cached = 0;
  for (uint32_t n = 1; n <= kMaxSlicesPerSpan; ++n) {
    for (Page* p = cache_[n]; p != nullptr; p = p->next) {
      MF2_CHECK(p->hold == Page::Hold::kCache && p->span_slices == n && !p->in_use(),
                "cache list corrupt");
      cached += n * kSliceSize;
    }
  }
  MF2_CHECK(cached == cached_bytes_, "cached_bytes_ == sum of cached spans");
  MF2_CHECK(cached_bytes_ <= cache_bound_, "cache within the bound last enforced");
  uint32_t empty = 0;
  size_t spans_bytes = 0;
  size_t returning = 0;
  bool seen_full = false;
  for (Segment* s = segments_; s != nullptr; s = s->next) {
    MF2_CHECK(s->next != nullptr || s == segments_tail_, "segment list tail");
    MF2_CHECK(s->next == nullptr || s->next->prev == s, "segment list links");
    const bool full = s->used_slices == ~uint64_t{0};
    MF2_CHECK(full || !seen_full, "segments with a free slice precede full ones");
    seen_full = seen_full || full;
    MF2_CHECK(s->cookie == kSegmentCookie && segment_map::Covers(reinterpret_cast<uintptr_t>(s)),
              "segment header corrupt or unregistered");
    MF2_CHECK(s->used_slices & kHeaderBit, "header slice marked used");
    if (s->used_slices == kHeaderBit) ++empty;
    for (uint32_t i = 1; i < kSlicesPerSegment;) {
      Page* p = &s->pages[i];
      if (!((s->used_slices >> i) & 1)) {
        MF2_CHECK(!p->in_use(), "free slice with a page in use");
        const Slice& free_slice = s->slices()[i];
        MF2_CHECK(free_slice.head_slice == 0 && free_slice.in_span == 0 &&
                      free_slice.cache_offset == 0,
                  "a free slice is in no span (head_slice, in_span and cache_offset 0)");
        ++i;
        continue;
      }
      uint32_t n = p->span_slices;
      MF2_CHECK(n >= 1 && n <= kMaxSlicesPerSpan && i + n <= kSlicesPerSegment,
                "span head with bad length");
      const bool is_returning = p->hold == Page::Hold::kReturning;
      MF2_CHECK(!is_returning || !p->in_use(), "a returning span is no heap's page");
      if (is_returning) returning += n * kSliceSize;
      for (uint32_t j = 0; j < n; ++j) {
        MF2_CHECK(s->slices()[i + j].head_slice == i &&
                      s->slices()[i + j].in_span == j << kSliceShift &&
                      ((s->used_slices >> (i + j)) & 1),
                  "a span's slices name its first slice");
        MF2_CHECK(j == 0 || s->pages[i + j].span_slices == 0, "only the first slice heads a span");
      }
      spans_bytes += n * kSliceSize;
      i += n;
    }
  }
  MF2_CHECK(empty == empty_segments_, "empty segment count");
  MF2_CHECK(spans_bytes == in_use_bytes_ + cached_bytes_ + returning_bytes_,
            "span bytes == in use + cached + returning");
  MF2_CHECK(returning == returning_bytes_, "returning_bytes_ == sum of returning spans");
}

}  // namespace mf2
