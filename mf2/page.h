// Page (the design note's MidPage): the descriptor of one span serving one size class.
//
// Descriptors live in their segment's header (segment.h), one per 64 KiB slice; a span's first
// slice holds the real descriptor and the others point back to it. Ownership is per heap: the
// page belongs to `xowner_`, and only the holder of that heap's claim (its thread while alive)
// touches the owner-only fields. Any other thread reaches the page only through the remote
// stack, the pending-queue link and the read-only class fields.
//
// Invariants, as equations (checked by CheckInvariants; "quiescent" ones only when no other
// thread is mid-operation):
//   carved_ <= capacity_
//   carved_ == used_ + |local_free_|                     every carved block is live-or-remote or free
//   used_ == popcount(live_)                               a block's live bit is set from allocation
//                                                          until the owner drains or frees it locally
//   remote.count == |remote.head chain|                    (always: one CAS changes both)
//   every block on local_free_: carved, aligned, not live
//   every block on the remote stack: live (freed by another thread, not yet drained)
//   where_ == kPartial  =>  HasFree()
//   where_ == kDetached =>  !HasFree() (a full page on none of its owner's lists)
//   xqueued_ in {0, 1}                                     a page is never enqueued twice
//   quiescent: remote.pending == (xqueued_ == 1)           flag set exactly when queued
//   quiescent: remote.count > 0  =>  remote.pending        no stranded remote frees
// Capacity conservation follows: capacity_ == (capacity_ - carved_) + |local_free_|
//                                            + (live blocks) + remote.count
//
// Detached pages (Route P adoption and idle reclamation). A full page that leaves its owner's
// active slot is published as kDetached with a release store, the owner's last touch. From then
// on it belongs to whoever holds its in_remote_pending flag: the consumer that popped it from a
// pending queue (its owner, an adopter or a reclaimer), which may change its owner while holding
// the flag. Even the owner frees into a detached page only after taking the flag
// (Heap::FreeDetached); a flag it cannot take means the page is queued or held, and the free
// goes through the remote stack like any other thread's. That costs two atomic RMWs per
// full->partial transition, so it is paid only for pages detached while adoption was armed
// (adoptable_detach; AdoptionArmed() in policy.h), the only pages an adopter may take. An idle
// reclaimer needs no flag from the owner: it takes only pages with every block on the remote
// stack, and an owner freeing a live block into a page proves that page is not one of them.
// Pages in any other state are touched only by their owner. Free() loads where (acquire) before owner: a where value stored by a new
// owner implies the new owner pointer is visible, so a stale owner match is always kDetached.
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

// alignas(64): the first cache line of every descriptor starts on a line boundary.
class alignas(64) Page {
 public:
  // kNowhere: on no list, held privately by the owner (transient) or retired.
  enum class Where : uint8_t { kNowhere, kActive, kPartial, kDetached };

  // ---- Data, in layout order: the first 56 bytes hold everything a free reads and the owner's
  // hot fields; partial-list links follow; the live bitmap; then, on their own line, the fields
  // other threads write. ----

  // Set by the page source under its lock (span bookkeeping).
  uint8_t span_slices = 0;  // on a span's first slice: span length; 0 elsewhere
  uint8_t head_offset = 0;  // on other slices of a span: distance back to the first slice
  bool cached = false;      // a free span kept resident in the page source's cache
  // Owner's lists; see "Detached pages" above.
  std::atomic<Where> xwhere_{Where::kNowhere};
  bool retained_empty = false;  // an empty page the owner keeps on its partial list for reuse
  // Written by the owner in Heap::Detach, before its release store of kDetached: whether
  // adoption was armed then (so the owner's frees into this page take its flag). Here, in the
  // first line's padding, not on the producers' line: it is written at every page switch.
  // Atomic (a plain bool was a data race): other threads read it while a new owner may write it.
  //  - A stale owner (Heap::Free: its own address still read as owner, where kDetached) reads it
  //    relaxed. Every value it can read is the `true` it wrote, if it wrote true: AdoptionArmed()
  //    is sticky and a later writer (an adopter) took the page after acquiring its kDetached, so
  //    it read armed as true too. A page it detached unarmed is not taken by adopters (next
  //    point) nor by idle sweeps while it still has a live block in it, so nobody rewrites it.
  //  - An adopter holding the page's flag reads it with acquire BEFORE where
  //    (Heap::AdoptFromPending). If it reads the `true` of a Detach, acquire (pairing with the
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

 private:
  uint32_t size_class_ = 0;
  std::atomic<Heap*> xowner_{nullptr};  // read on every free; changes only under the flag
  uint32_t block_size_ = 0;
  uint32_t capacity_ = 0;
  uint32_t used_ = 0;    // owner
  uint32_t carved_ = 0;  // owner
  uint64_t magic_ = 0;
  char* start_ = nullptr;
  Block* local_free_ = nullptr;  // owner

 public:
  Page* prev = nullptr;  // partial list links (owner)
  Page* next = nullptr;


  // Prepares a span's head descriptor to serve `size_class` for `owner`. Owner only.
  void InitForClass(uint32_t size_class, char* start, Heap* owner);
  // Resets the class fields before the span goes back to the page source. Owner only.
  void Retire();

  // The owner's (or flag holder's) view. Relaxed: it wrote the value itself.
  Where where() const { return xwhere_.load(std::memory_order_relaxed); }
  // Free() and flag holders: acquire pairs with set_where's release (see Detached pages).
  Where where_acquire() const { return xwhere_.load(std::memory_order_acquire); }
  // Release: the owner's (or flag holder's) earlier writes to the page, and the owner pointer,
  // are visible to whoever acquires this value. A plain store on x86.
  void set_where(Where w) { xwhere_.store(w, std::memory_order_release); }

  // ---- Read-only while the page serves a class (any thread) ----
  uint32_t size_class() const { return size_class_; }
  uint32_t block_size() const { return block_size_; }
  uint32_t capacity() const { return capacity_; }
  char* start() const { return start_; }
  bool in_use() const { return size_class_ != 0; }

  // Index of the block containing `p`; sets *exact when p is a block start. Any thread.
  uint32_t BlockIndex(const void* p, bool* exact) const {
    uint64_t offset = static_cast<uint64_t>(static_cast<const char*>(p) - start_);
    uint32_t idx = static_cast<uint32_t>((offset * magic_) >> kIndexShift);
    *exact = uint64_t{idx} * block_size_ == offset;
    return idx;
  }
  // Whether block `idx` is handed out (or freed remotely and not yet drained). Any thread.
  bool IsLive(uint32_t idx) const {
    // Relaxed: a hint for misuse detection; the owner makes the authoritative check when it
    // drains. Legitimate frees happen after the allocation that set the bit (user's ordering).
    return (live_[idx >> 6].load(std::memory_order_relaxed) >> (idx & 63)) & 1;
  }

  // ---- Owner only ----
  MF2_ALWAYS_INLINE Block* Pop() {
    Block* b = local_free_;
    if (MF2_PREDICT_TRUE(b != nullptr)) {
      local_free_ = LoadNext(b);
      bool exact;
      SetLive(BlockIndex(b, &exact));
    } else if (carved_ < capacity_) {
      b = reinterpret_cast<Block*>(start_ + size_t{carved_} * block_size_);
      SetLive(carved_);
      ++carved_;
    } else {
      return nullptr;
    }
    ++used_;
    UnpoisonMemory(b, block_size_);
    return b;
  }
  // Local free of a live block `b` with index `idx`.
  MF2_ALWAYS_INLINE void PushLocal(Block* b, uint32_t idx) {
    ClearLive(idx);
    StoreNext(b, local_free_);
    PoisonMemory(b, block_size_);
    local_free_ = b;
    --used_;
  }
  bool HasFree() const { return local_free_ != nullptr || carved_ < capacity_; }
  uint32_t used() const { return used_; }
  uint32_t carved() const { return carved_; }
  // Moves the blocks of a taken remote stack to the local free list after validating each one
  // (inside the page, a block start, live, at most `count` of them). A list that is not well
  // formed is reported and cut at the first bad node, never absorbed. Returns blocks moved.
  uint32_t AbsorbRemote(RemoteWord taken);

  // ---- Shared with other threads ----
  RemoteStack& remote() { return remote_; }
  const RemoteStack& remote() const { return remote_; }
  // Relaxed: compared against the caller's own heap on the free path (only that heap's claim
  // holder ever stores its own address here); remote freers re-read it after winning the flag.
  Heap* owner_relaxed() const { return xowner_.load(std::memory_order_relaxed); }
  // The edge winner (holding in_remote_pending) reads the owner whose queue gets the page.
  // Acquire pairs with the release store in SetOwner (also ordered by the flag's acq_rel).
  Heap* owner_mt() const { return xowner_.load(std::memory_order_acquire); }
  // Owner or flag-holding adopter: publishes the new owner.
  void SetOwner(Heap* h) { xowner_.store(h, std::memory_order_release); }

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
  void SetLive(uint32_t idx) {
    // Relaxed load and store: the owner is the only writer; readers only read.
    std::atomic<uint64_t>& w = live_[idx >> 6];
    w.store(w.load(std::memory_order_relaxed) | (uint64_t{1} << (idx & 63)),
            std::memory_order_relaxed);
  }
  void ClearLive(uint32_t idx) {
    // Relaxed: as SetLive.
    std::atomic<uint64_t>& w = live_[idx >> 6];
    w.store(w.load(std::memory_order_relaxed) & ~(uint64_t{1} << (idx & 63)),
            std::memory_order_relaxed);
  }

  std::atomic<uint64_t> live_[kMaxBlocksPerSpan / 64] = {};

  // Producer-facing fields on their own cache line, away from the owner's hot fields.
  alignas(64) RemoteStack remote_;
  std::atomic<Page*> xpending_next_{nullptr};
  std::atomic<uint32_t> xqueued_{0};      // debug: 1 while on a pending queue

 public:
  // Adoption bookkeeping, protected by in_remote_pending: written by the 0->1 edge winner before
  // it queues the page, read and cleared by the thread that pops it (adoption.h).
  bool adopt_counted = false;     // counted in the class's adoptable-page total
  uint64_t rfr_deadline_ns = 0;   // Route P: no adoption before this time (owner's window)

 private:
  [[maybe_unused]] uint64_t drained_seq_ = 0;  // debug, owner: last enqueue sequence drained
  [[maybe_unused]] std::atomic<uint64_t> xenqueue_seq_{0};  // debug: bumped by each 0->1 edge winner
};

}  // namespace mf2

#endif  // MF2_PAGE_H_
