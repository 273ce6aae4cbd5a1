// Page (the design note's MidPage): the descriptor of one span serving one size class.
//
// Descriptors live in their segment's header (segment.h), one per 64 KiB slice. The first cache
// line of a descriptor is what a free reads (owner, class, block-start test); it is replicated in
// every slice of a span, so a free finds everything it needs with a mask, one index and one line,
// whichever slice its pointer falls in (no hop to the span's first slice). The other lines exist
// on the span's first slice (the head) only: the owner's lists, then, on a line of their own, the
// fields other threads write.
//
// Ownership is per heap: the page belongs to `xowner_`, and only the holder of that heap's claim
// (its thread while alive) touches the owner-only fields. Any other thread reaches the page only
// through the remote stack, the pending-queue link and the read-only class fields.
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
//   every slice of the span has the head's first line (owner, class, start, block-start test)
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

// alignas(256): descriptors are 256 bytes, each of their cache lines on a line boundary.
class alignas(256) Page {
 public:
  // kNowhere: on no list, held privately by the owner (transient) or retired.
  enum class Where : uint8_t { kNowhere, kActive, kPartial, kDetached };

  // ---- Line 0: the free path's view, the same in every slice of the span ----
 private:
  std::atomic<Heap*> xowner_{nullptr};  // read on every free; changes only under the flag
  uint64_t start_mul_ = 0;   // start_ * div_mul_ (mod 2^64): IsBlockStart's offset term
  uint64_t div_mul_ = 0;     // the class's block-start multiplier (size_class.h)
  uint64_t div_limit_ = 0;   // the class's bound; 0 while the span serves no class
  char* start_ = nullptr;    // the span's first byte (block 0)
  Page* head_ = nullptr;     // the span's first descriptor (this, on the head); set by the source
  uint32_t size_class_ = 0;  // 0: serving no class
  uint32_t block_size_ = 0;

 public:
  // Set by the page source under its lock (span bookkeeping), on the head.
  uint8_t span_slices = 0;  // on a span's first slice: span length; 0 elsewhere
  bool cached = false;      // a free span kept resident in the page source's cache

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
  bool adoptable_detach = false;
  Page* prev = nullptr;  // partial list links (owner); the page source's cache list (next)
  Page* next = nullptr;

  // ---- Line 2: shared with other threads (head only) ----
 private:
  alignas(64) RemoteStack remote_;
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
  // Line 3 is padding: a power-of-two descriptor size.

 public:
  // ---- Any thread: the free path (line 0, valid in every slice) ----
  // Whether `a` is the start of one of this span's blocks (0..capacity-1): one multiply, one
  // compare (size_class.h). False on every slice of a span that serves no class.
  bool IsBlockStart(uintptr_t a) const { return a * div_mul_ - start_mul_ < div_limit_; }
  uint32_t size_class() const { return size_class_; }
  uint32_t block_size() const { return block_size_; }
  bool in_use() const { return size_class_ != 0; }
  char* start() const { return start_; }
  Page* head() const { return head_; }
  // Relaxed: compared against the caller's own heap on the free path (only that heap's claim
  // holder ever stores its own address here); remote freers re-read it after winning the flag.
  Heap* owner_relaxed() const { return xowner_.load(std::memory_order_relaxed); }
  // The edge winner (holding in_remote_pending) reads the owner whose queue gets the page.
  // Acquire pairs with the release store in SetOwner (also ordered by the flag's acq_rel).
  Heap* owner_mt() const { return xowner_.load(std::memory_order_acquire); }

  // ---- The page source (under its lock) ----
  // Links every slice of a span of `slices` slices starting at this descriptor (whose memory
  // starts at `start`) to it.
  void MakeSpan(uint32_t slices, char* start);
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
  // The index of a block start of this span (slow paths, checks).
  uint32_t BlockIndex(const void* b) const {
    return static_cast<uint32_t>((static_cast<const char*>(b) - start_) / block_size_);
  }

  // ---- Owner only ----
  // Hands out up to `max` blocks into out[0], out[1], ... Each block gets canary kInCache. Blocks
  // come from the local free list, most recently freed first, each one's canary (kOnPage) checked
  // and each link validated before it is followed (inside the carved part of the span, a block
  // start; otherwise the list is reported as corrupt and cut there, the rest never reused), then
  // from the never-carved tail in address order. Returns the number handed out.
  uint32_t PopBatch(void** out, uint32_t max);
  // Takes back a block handed out of this page (canary checked by the caller): it goes on the
  // local free list with canary kOnPage.
  void PushLocal(Block* b);
  // Moves the blocks of a taken remote stack to the local free list after validating each one
  // (inside the carved part of the span, a block start, canary kOnRemote, at most `count` of
  // them). A list that is not well formed is reported and cut at the first bad node, never
  // absorbed. Returns blocks moved.
  uint32_t AbsorbRemote(RemoteWord taken);

  // ---- Shared with other threads (head only) ----
  RemoteStack& remote() { return remote_; }
  const RemoteStack& remote() const { return remote_; }

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
  // Whether `b` (a link found in a free list) is one of this span's carved block starts.
  bool IsCarvedBlock(const Block* b) const {
    const uintptr_t a = reinterpret_cast<uintptr_t>(b);
    return IsBlockStart(a) && (a - reinterpret_cast<uintptr_t>(start_)) / block_size_ < carved_;
  }
  // Reports the local free list as corrupt at `bad` and keeps only its first `keep` (0 or 1)
  // blocks: the others stay handed out forever (never reused), so the page is never released
  // under them.
  void LoseLocalList(const Block* bad, uint32_t keep, const char* what);
  // Stores a link, encoded in hardened builds (MF2_HARDENED): stored = next ^ key ^ rotl(b, 17),
  // so a use-after-free write cannot plant a pointer that decodes inside the page by chance.
  static void StoreLink(Block* b, Block* next);
  static Block* LoadLink(const Block* b);
};

// 256 bytes: the free path finds a slice's descriptor with a shift and a mask (segment.h).
static_assert(sizeof(Page) == 256, "four cache lines per descriptor: free path, owner, producers");
static_assert(alignof(Page) == 256, "descriptors start on cache lines, at a power-of-two stride");

inline void Page::StoreLink(Block* b, Block* next) {
#if defined(MF2_HARDENED) && MF2_HARDENED
  const uintptr_t self = reinterpret_cast<uintptr_t>(b);
  StoreNext(b, reinterpret_cast<Block*>(reinterpret_cast<uintptr_t>(next) ^ CanaryKey() ^
                                        ((self << 17) | (self >> 47))));
#else
  StoreNext(b, next);
#endif
}

inline Block* Page::LoadLink(const Block* b) {
#if defined(MF2_HARDENED) && MF2_HARDENED
  const uintptr_t self = reinterpret_cast<uintptr_t>(b);
  return reinterpret_cast<Block*>(reinterpret_cast<uintptr_t>(LoadNext(b)) ^ CanaryKey() ^
                                  ((self << 17) | (self >> 47)));
#else
  return LoadNext(b);
#endif
}

}  // namespace mf2

#endif  // MF2_PAGE_H_
