// Page (the prototype's MidPage; docs/design.md): the descriptor of a span of one class, and Slice,
// the free path's 16-byte view of each 64 KiB slice.
//
// Both live in their segment's header (segment.h). A Slice holds what a free needs: the owner of
// the span covering the slice, its class and the index of its first slice; it is replicated for
// every slice of a span, and four fit in a cache line, so a free finds everything with a mask, an
// index and a line that stays cached (a 4 MiB segment's 64 slices use 16 lines). The Page, one
// per span on its first slice (`pages[head]`), holds the rest: the owner's lists, then, on a line
// of their own, the fields other threads write.
//
// Ownership is per heap: the page belongs to the heap in its slices' `xowner`, and only the holder
// of that heap's claim (its thread while alive) touches the owner-only fields. Any other thread
// reaches the page only through the remote stack, the pending-queue link and the read-only class
// fields.
//
// Blocks (block.h): every carved block is on the local free list, or handed out of the page
// (`used_`: to the program, to a heap's cache, or freed remotely and still on the remote stack).
// Invariants, as equations (checked by CheckInvariants; "quiescent" ones only when no other
// thread is mid-operation):
//   carved_ <= capacity_
//   carved_ == used_ + local_count_                       every carved block is out or free here
//   local_count_ == |local_free_ chain|; each: carved, a block start, canary kOnPage
//   remote.count == |remote.head chain|                    (always: one CAS changes both)
//   quiescent: each block on the remote stack: carved, a block start, canary kOnRemote,
//              and remote.count <= used_                  (remote blocks are handed out ones)
//   where_ == kPartial  =>  HasFree()
//   where_ == kDetached =>  !HasFree() (a full page on none of its owner's lists)
//   xqueued_ in {0, 1}                                     a page is never enqueued twice
//   quiescent: remote.pending == (xqueued_ == 1)           flag set exactly when queued
//   quiescent: remote.count > 0  =>  remote.pending        no stranded remote frees
//   every slice of the span: head == the span's first slice, size_class == size_class_, and
//                            xowner == the page's owner
// Capacity conservation follows: capacity_ == (capacity_ - carved_) + local_count_ + used_, and
// used_ == (blocks held by the program) + (blocks in heaps' caches) + remote.count, which
// HeapRegistry::CheckAll and the fuzzers check with the caches and their shadow of live blocks.
//
// Detached pages (Route P adoption and idle reclamation). A full page that leaves its owner's
// active slot is published as kDetached with a release store, the owner's last touch. From then
// on it belongs to whoever holds its in_remote_pending flag: the consumer that popped it from a
// pending queue (its owner, an adopter or a reclaimer), which may change its owner while holding
// the flag. Even the owner returns blocks to a detached page only after taking the flag
// (Heap::FreeDetached); a flag it cannot take means the page is queued or held, and the block
// goes through the remote stack like any other thread's. That costs two atomic RMWs per
// full->partial transition, so it is paid only for pages detached while adoption was armed
// (adoptable_detach; AdoptionArmed() in policy.h), the only pages an adopter may take. An idle
// reclaimer needs no flag from the owner: it takes only pages with every block on the remote
// stack, and an owner returning a block into a page proves that page is not one of them.
// Pages in any other state are touched only by their owner. Heap::ReturnBlock loads where
// (acquire) before owner: a where value stored by a new owner implies the new owner pointer is
// visible, so a stale owner match is always kDetached. (A block in a heap's cache stays counted
// in its page's used_ whoever owns the page, so the cache itself needs no such protocol: a block
// cached under a stale owner reading is returned through ReturnBlock, which re-checks.)
#ifndef MF2_PAGE_H_
#define MF2_PAGE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "mf2/block.h"
#include "mf2/check.h"
#include "mf2/remote_stack.h"
#include "mf2/size_class.h"

namespace mf2 {

class Heap;

// The bytes of a heap's per-class cache (Heap::Magazine, which checks it): a class's cache is
// at class * kMagazineBytes from its heap's first byte.
inline constexpr uint32_t kMagazineBytes = 32;

// The free path's view of one slice (see above). Written by the page source (head_slice and
// in_span, under its lock, while the span is on no heap) and by the span's owner or flag holder
// (the class at InitForClass/Retire, xowner at SetOwner).
struct alignas(16) Slice {
  std::atomic<Heap*> xowner{nullptr};  // the span's owner; changes only under its flag
  // Index of the span's first slice in its segment; 0 when in no span.
  uint8_t head_slice = 0;
  // The span's class times kMagazineBytes: where free finds the class's cache in a heap, one
  // add (an address operand) from the heap, where the class itself cost a shift and an add.
  // 0 when no span serving a class covers the slice. The class is derived from it.
  uint16_t cache_offset = 0;
  // This slice's first byte as an offset into its span ((slice - head_slice) << kSliceShift), so
  // that free finds a block's offset in its span as its offset in the slice plus this: a
  // zero-extending move and an add from memory (SpanOffset); 0 when in no span.
  uint32_t in_span = 0;
  uint32_t head() const { return head_slice; }
  uint32_t size_class() const { return cache_offset / kMagazineBytes; }
  void set_class(uint32_t k) { cache_offset = static_cast<uint16_t>(k * kMagazineBytes); }
};
static_assert(offsetof(Slice, in_span) + sizeof(uint32_t) <= 16, "the Slice's fields fit it");
static_assert(kNumClasses * kMagazineBytes <= 65536, "a class's cache offset fits cache_offset");
static_assert(sizeof(Slice) == 16, "four slices per cache line");

// Whether offset `off` from a span's first byte is the start of one of its blocks of class k
// (0..capacity-1): one multiply, one compare (size_class.h). False for every offset of class 0.
MF2_ALWAYS_INLINE bool IsBlockOffset(uintptr_t off, uint32_t k) {
  return kClassDiv.div[k].IsBlockOffset(off);
}

// alignas(256): descriptors are 256 bytes, each of their cache lines on a line boundary.
class alignas(256) Page {
 public:
  // kNowhere: on no list, held privately by the owner (transient) or retired.
  enum class Where : uint8_t { kNowhere, kActive, kPartial, kDetached };

  // ---- Line 0: the span (head only) ----
 private:
  char* start_ = nullptr;    // the span's first byte (block 0)
  Slice* slice_ = nullptr;   // the span's first Slice; its span_slices entries follow
  uint32_t size_class_ = 0;  // 0: serving no class
  uint32_t block_size_ = 0;

 public:
  // Set by the page source under its lock (span bookkeeping).
  uint8_t span_slices = 0;  // span length in slices; 0 when this descriptor heads no span
  // Who holds a span: a heap (it was carved or taken from the cache for one), the page source's
  // cache, or no one while its memory goes back to the OS (OsPageSource::ReturnToOs).
  enum class Hold : uint8_t { kHeap, kCache, kReturning };
  Hold hold = Hold::kHeap;

  // ---- Line 1: the owner's (head only) ----
 private:
  alignas(64) Block* local_free_ = nullptr;
  uint32_t local_count_ = 0;
  uint32_t used_ = 0;
  uint32_t carved_ = 0;
  uint32_t capacity_ = 0;
  std::atomic<Where> xwhere_{Where::kNowhere};  // owner's lists; see "Detached pages" above

 public:
  bool retained_empty = false;  // an empty page the owner keeps on its partial list for reuse
  // Written by the owner in Heap::Detach, before its release store of kDetached: whether
  // adoption was armed then (so the owner's returns into this page take its flag).
  // Atomic (a plain bool was a data race): other threads read it while a new owner may write it.
  //  - A stale owner (Heap::Free: its own address still read as owner, where kDetached) reads it
  //    relaxed. Every value it can read is the `true` it wrote, if it wrote true: AdoptionArmed()
  //    is sticky and a later writer (an adopter) took the page after acquiring its kDetached, so
  //    it read armed as true too. A page it detached unarmed is not taken by adopters (next
  //    point) nor by idle sweeps while it still has a live block in it, so nobody rewrites it.
  //  - An adopter holding the page's flag reads it with acquire BEFORE where
  //    (Heap::AdoptFromPending_mt). If it reads the `true` of a Detach, acquire (pairing with the
  //    release store) makes it read where as that Detach's kDetached or the kActive/kNowhere
  //    stored before it (refused). Reading where first, it could pair the kDetached of an
  //    earlier unarmed detach (left without the flag) with the `true` of a Detach in progress
  //    (after a route switch) and take a page its owner still holds.
  class ArmedAtDetach {
   public:
    // Release: the owner's earlier stores (where) are visible to an acquiring reader (above).
    void operator=(bool armed) { v_.store(armed, std::memory_order_release); }
    // Relaxed: the owner's own read, or a stale owner's (above).
    operator bool() const { return v_.load(std::memory_order_relaxed); }
    // Acquire: an adopter's read, before its read of where (above).
    bool load_acquire() const { return v_.load(std::memory_order_acquire); }

   private:
    std::atomic<bool> v_{false};
  };
  ArmedAtDetach adoptable_detach;
  Page* prev = nullptr;  // partial list links (owner); the page source's cache list (next)
  Page* next = nullptr;

  // ---- Line 2: shared with other threads (head only) ----
 private:
  alignas(64) RemoteStack xremote_;
  std::atomic<Page*> xpending_next_{nullptr};
  std::atomic<uint32_t> xqueued_{0};  // debug: 1 while on a pending queue

 public:
  // Adoption bookkeeping, protected by in_remote_pending: written by the 0->1 edge winner before
  // it queues the page, read and cleared by the thread that pops it (adoption.h).
  bool adopt_counted = false;    // counted in the class's adoptable-page total
  uint64_t rfr_deadline_ns = 0;  // Route P: no adoption before this time (owner's window)

 private:
  [[maybe_unused]] uint64_t drained_seq_ = 0;  // debug, owner: last enqueue sequence drained
  [[maybe_unused]] std::atomic<uint64_t> xenqueue_seq_{0};  // debug: bumped by each edge winner

 public:
  // ---- Any thread: read-only while the page serves a class ----
  // Whether `a` is the start of one of this span's blocks (0..capacity-1).
  bool IsBlockStart(uintptr_t a) const {
    return IsBlockOffset(a - reinterpret_cast<uintptr_t>(start_), size_class_);
  }
  uint32_t size_class() const { return size_class_; }
  uint32_t block_size() const { return block_size_; }
  bool in_use() const { return size_class_ != 0; }
  char* start() const { return start_; }
  // Relaxed: compared against the caller's own heap on the free path (only that heap's claim
  // holder ever stores its own address here); remote freers re-read it after winning the flag.
  Heap* owner_relaxed() const { return slice_->xowner.load(std::memory_order_relaxed); }
  // The edge winner (holding in_remote_pending) reads the owner whose queue gets the page.
  // Acquire pairs with the release store in SetOwner (also ordered by the flag's acq_rel).
  Heap* owner_mt() const { return slice_->xowner.load(std::memory_order_acquire); }

  // ---- The page source (under its lock) ----
  // Makes this descriptor the head of a span of `slices` slices whose memory starts at `start`
  // and whose Slice entries start at `slice` (the entry of this descriptor's slice, at index
  // `index` of its segment).
  void MakeSpan(uint32_t slices, char* start, Slice* slice, uint8_t index);
  // Unlinks the slices of a span going back to its segment.
  void UnmakeSpan();

  // ---- Head only ----
  // Prepares the span to serve `size_class` for `owner`. Owner only.
  void InitForClass(uint32_t size_class, Heap* owner);
  // Resets the class fields before the span goes back to the page source. Owner only.
  void Retire();
  // Owner or flag-holding adopter: publishes the new owner in every slice. Release: pairs with
  // owner_mt's acquire.
  void SetOwner(Heap* h);
  // The Slice entry of the span's first slice (tests and checks).
  const Slice* slice() const { return slice_; }

  // The owner's (or flag holder's) view. Relaxed: it wrote the value itself.
  Where where() const { return xwhere_.load(std::memory_order_relaxed); }
  // Heap::ReturnBlock and flag holders: acquire pairs with set_where's release.
  Where where_acquire() const { return xwhere_.load(std::memory_order_acquire); }
  // Release: the owner's (or flag holder's) earlier writes to the page, and the owner pointer,
  // are visible to whoever acquires this value. A plain store on x86.
  void set_where(Where w) { xwhere_.store(w, std::memory_order_release); }

  uint32_t capacity() const { return capacity_; }
  uint32_t used() const { return used_; }
  uint32_t carved() const { return carved_; }
  uint32_t local_count() const { return local_count_; }
  bool HasFree() const { return local_free_ != nullptr || carved_ < capacity_; }
  bool HasUncarved() const { return carved_ < capacity_; }
  // The index of a block start of this span (slow paths, checks).
  uint32_t BlockIndex(const void* b) const {
    return static_cast<uint32_t>((static_cast<const char*>(b) - start_) / block_size_);
  }

  // ---- Owner only ----
  // Hands out up to `max` blocks into out[0], out[1], ... Each block gets canary kInCache. Blocks
  // come from the local free list, most recently freed first, each one's canary (kOnPage) checked
  // and each link validated before it is followed (inside the carved part of the span, a block
  // start; otherwise the list is reported as corrupt and cut there, the rest never reused), then
  // from the never-carved tail in address order, at most `max_fresh` of those (a heap's first
  // refills of a class carve little: Heap::carve_limit_). Returns the number handed out.
  uint32_t PopBatch(void** out, uint32_t max, uint32_t max_fresh);
  uint32_t PopBatch(void** out, uint32_t max) { return PopBatch(out, max, max); }
  // Takes back a block handed out of this page (canary checked by the caller): it goes on the
  // local free list with canary kOnPage.
  void PushLocal(Block* b) { PushLocal(b, CanaryKey()); }
  // The same with `key` == CanaryKey(). Inline, and with the key from the caller (a heap's copy):
  // a flush of a full cache runs it once per block (Heap::ReturnBlock), which then needs no
  // stack frame.
  void PushLocal(Block* b, uint64_t key) {
    StoreLink(b, local_free_, key);
    StoreCanary(b, reinterpret_cast<uintptr_t>(b) ^ key ^ kOnPage);  // Canary(b, kOnPage)
    PoisonMemory(b, block_size_);
    local_free_ = b;
    ++local_count_;
    --used_;
  }
  // Moves the blocks of a taken remote stack to the local free list after validating each one
  // (inside the carved part of the span, a block start, canary kOnRemote, at most `count` of
  // them). A list that is not well formed is reported and cut at the first bad node, never
  // absorbed. Each block's prefetch hint (block.h) is prefetched as the walk reaches it, never
  // followed. Returns blocks moved. The first `max` of them go to `out` instead, as PopBatch
  // hands blocks out (canary kInCache, still counted in used()): a refill that collects the
  // page it is about to pop from writes each of those blocks once, not twice
  // (min(returned, max) are in `out`).
  uint32_t CollectRemote(RemoteWord taken, void** out = nullptr, uint32_t max = 0);

  // ---- Shared with other threads (head only) ----
  RemoteStack& remote() { return xremote_; }
  const RemoteStack& remote() const { return xremote_; }

  // Pending-queue link, written by the enqueuing thread before its publishing CAS and read by the
  // consumer after its acquiring pop. Relaxed: ordered by the queue head's release/acquire.
  Page* pending_next() const { return xpending_next_.load(std::memory_order_relaxed); }
  void set_pending_next(Page* p) { xpending_next_.store(p, std::memory_order_relaxed); }

  // Debug bookkeeping for invariants 5 and 14 (never enqueued twice; per-page enqueue sequence
  // drained in order, each once). Active in debug builds; compiled out with NDEBUG.
  void DebugNoteEnqueued_mt();  // by the 0->1 edge winner, before pushing the page
  void DebugNoteDequeued();     // by the consumer, before TakeAll clears the flag
  uint32_t debug_queued() const { return xqueued_.load(std::memory_order_relaxed); }

  // Checks the equations in the header comment. `quiescent` adds the cross-thread ones.
  void CheckInvariants(bool quiescent) const;

 private:
  // Whether `b` (a link found in a free list) is one of this span's carved block starts: one
  // multiply for the block-start test, one for the carved bound (no division).
  bool IsCarvedBlock(const Block* b) const {
    const uintptr_t off = reinterpret_cast<uintptr_t>(b) - reinterpret_cast<uintptr_t>(start_);
    return IsBlockOffset(off, size_class_) && off < uintptr_t{carved_} * block_size_;
  }
  // Reports the local free list as corrupt at `bad` (found in or as the free block `holder`) and
  // keeps only its first `keep` (0 or 1) blocks: the others stay handed out forever (never
  // reused), so the page is never released under them.
  void LoseLocalList(const void* bad, const Block* holder, uint32_t keep, const char* what);
  // Stores a link, encoded in hardened builds (MF2_HARDENED): stored = next ^ key ^ rotl(b, 17),
  // so a use-after-free write cannot plant a pointer that decodes inside the page by chance.
  static void StoreLink(Block* b, Block* next);
  static Block* LoadLink(const Block* b);
  // The same with `key` == CanaryKey(), which loops read once.
  static void StoreLink(Block* b, Block* next, uint64_t key);
  static Block* LoadLink(const Block* b, uint64_t key);
  // IsCarvedBlock's bounds, read once by the loops over a list (PopBatch, CollectRemote): the
  // compiler cannot keep the page's fields in registers across the blocks' stores.
  struct CarvedBounds {
    uintptr_t start;
    ClassDiv div;   // kClassDiv's exact-division test for the class
    uintptr_t end;  // carved_ * block_size_
    bool Contains(const Block* b) const {
      const uintptr_t off = reinterpret_cast<uintptr_t>(b) - start;
      return div.IsBlockOffset(off) && off < end;
    }
  };
  CarvedBounds Carved() const {
    return {reinterpret_cast<uintptr_t>(start_), kClassDiv.div[size_class_],
            uintptr_t{carved_} * block_size_};
  }

  friend struct PageLayout;  // the static_asserts below
};

static_assert(sizeof(Page) == 256, "four cache lines: span, owner, producers, padding");
static_assert(alignof(Page) == 256, "descriptors start on cache lines, at a power-of-two stride");

// The line claims of the comments above. offsetof on a class that is not standard-layout is
// conditionally supported; clang and gcc support it (with a warning, silenced here).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"
struct PageLayout {
  static constexpr size_t kLine = 64;
  static_assert(offsetof(Page, span_slices) < kLine && offsetof(Page, hold) < kLine,
                "line 0: the span's fields (the page source's)");
  static_assert(offsetof(Page, local_free_) == kLine && offsetof(Page, next) < 2 * kLine,
                "line 1: the owner's fields, from the free list to the partial-list links");
  static_assert(offsetof(Page, xremote_) == 2 * kLine &&
                    offsetof(Page, xpending_next_) < 3 * kLine &&
                    offsetof(Page, rfr_deadline_ns) < 3 * kLine,
                "line 2: the fields other threads write (remote word, queue link, adoption)");
};
#pragma GCC diagnostic pop

inline void Page::StoreLink(Block* b, Block* next, uint64_t key) {
#if defined(MF2_HARDENED) && MF2_HARDENED
  const uintptr_t self = reinterpret_cast<uintptr_t>(b);
  StoreNext(b, reinterpret_cast<Block*>(reinterpret_cast<uintptr_t>(next) ^ key ^
                                        ((self << 17) | (self >> 47))));
#else
  StoreNext(b, next);
#endif
}

inline Block* Page::LoadLink(const Block* b, uint64_t key) {
#if defined(MF2_HARDENED) && MF2_HARDENED
  const uintptr_t self = reinterpret_cast<uintptr_t>(b);
  return reinterpret_cast<Block*>(reinterpret_cast<uintptr_t>(LoadNext(b)) ^ key ^
                                  ((self << 17) | (self >> 47)));
#else
  return LoadNext(b);
#endif
}

inline void Page::StoreLink(Block* b, Block* next) {
#if defined(MF2_HARDENED) && MF2_HARDENED
  StoreLink(b, next, CanaryKey());
#else
  StoreNext(b, next);
#endif
}

inline Block* Page::LoadLink(const Block* b) {
#if defined(MF2_HARDENED) && MF2_HARDENED
  return LoadLink(b, CanaryKey());
#else
  return LoadNext(b);
#endif
}

}  // namespace mf2

#endif  // MF2_PAGE_H_
