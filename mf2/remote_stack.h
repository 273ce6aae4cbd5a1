// A page's remote-free stack: the lock-free Treiber stack other threads push freed blocks on,
// with `remote_count` and the `in_remote_pending` flag packed into the same 64-bit word.
//
//   bit 0        in_remote_pending: the page is on (or being pushed onto) its owner's pending
//                queue, or an adopter holds it (see TryAcquireFlag)
//   bits 1..47   head of the stack (blocks are 16-byte aligned, user addresses < 2^47)
//   bits 48..63  remote_count: number of blocks on the stack (<= kMaxBlocksPerSpan)
//
// Why one word (docs/protocol.md): with a separate flag the owner's "clear flag; take stack"
// and a producer's "push; set flag" form the store-buffering shape, and a page can end up with
// blocks on its stack, the flag clear and nobody queued to drain it. One CAS per remote free that
// pushes, counts and sets the flag, and one exchange per drain that takes everything and clears
// the flag, leave no such window. Taking the blocks without clearing the flag (direct collection
// of the active page) is a separate operation that leaves the flag as it is.
//
// Who calls what: Push_mt by any thread freeing a block it does not own; everything else by the
// page owner (the holder of the owning heap's claim) or by an adopter holding the flag.
#ifndef MF2_REMOTE_STACK_H_
#define MF2_REMOTE_STACK_H_

#include <atomic>
#include <cstdint>

#include "mf2/block.h"
#include "mf2/size_class.h"

namespace mf2 {

class RemoteWord {
 public:
  static constexpr uint64_t kFlag = 1;
  static constexpr int kCountShift = 48;
  static constexpr uint64_t kHeadMask = ((uint64_t{1} << kCountShift) - 1) & ~kFlag;

  explicit constexpr RemoteWord(uint64_t w) : w_(w) {}
  static RemoteWord Make(Block* head, uint32_t count, bool pending) {
    return RemoteWord((uint64_t{count} << kCountShift) | reinterpret_cast<uint64_t>(head) |
                      (pending ? kFlag : 0));
  }

  Block* head() const { return reinterpret_cast<Block*>(w_ & kHeadMask); }
  uint32_t count() const { return static_cast<uint32_t>(w_ >> kCountShift); }
  bool pending() const { return (w_ & kFlag) != 0; }
  uint64_t raw() const { return w_; }

 private:
  uint64_t w_;
};

static_assert(kMaxBlocksPerSpan < (1u << 16), "remote_count must fit in 16 bits");

class RemoteStack {
 public:
  // Any non-owner thread: pushes `b` (already poisoned; its link is written here), counts it and
  // sets in_remote_pending. Returns true when this push set the flag (the 0->1 edge): the caller
  // must then push the page on its owner's pending queue, exactly once.
  // `count_after` (optional) receives remote_count after this push.
  bool Push_mt(Block* b, uint32_t* count_after = nullptr) {
    // Relaxed: the old head is only stored into b's link, never dereferenced here.
    uint64_t old = word_.load(std::memory_order_relaxed);
    for (;;) {
      RemoteWord w(old);
      StoreNext(b, w.head());
      RemoteWord next = RemoteWord::Make(b, w.count() + 1, true);
      // acq_rel on success. Release: publishes b's link (and the freed block) to the owner's
      // acquiring take. Acquire: an edge winner reads the page's owner next; the owner (or an
      // adopter) wrote it before releasing the flag with TakeAll.
      if (word_.compare_exchange_weak(old, next.raw(), std::memory_order_acq_rel,
                                      std::memory_order_relaxed)) {
        if (count_after != nullptr) *count_after = next.count();
        return !w.pending();
      }
    }
  }

  // Any non-owner thread: pushes the chain first..last (linked by Block::next, `n` blocks, each
  // already poisoned and with canary kOnRemote) with one CAS, as n Push_mt would. Returns true
  // when this push set the flag (the 0->1 edge, as Push_mt). `count_after` as Push_mt.
  bool PushChain_mt(Block* first, Block* last, uint32_t n, uint32_t* count_after = nullptr) {
    // Relaxed: as Push_mt.
    uint64_t old = word_.load(std::memory_order_relaxed);
    for (;;) {
      RemoteWord w(old);
      StoreNext(last, w.head());
      RemoteWord next = RemoteWord::Make(first, w.count() + n, true);
      // acq_rel on success: as Push_mt (release publishes every link of the chain).
      if (word_.compare_exchange_weak(old, next.raw(), std::memory_order_acq_rel,
                                      std::memory_order_relaxed)) {
        if (count_after != nullptr) *count_after = next.count();
        return !w.pending();
      }
    }
  }

  // Owner, after popping the page from its pending queue (or an adopter holding the flag):
  // takes every block and clears in_remote_pending in one step.
  RemoteWord TakeAll() {
    // acq_rel. Acquire: see the links of the blocks taken. Release: the next edge winner, whose
    // CAS reads this value, sees everything the owner did before (e.g. a new owner pointer).
    return RemoteWord(word_.exchange(0, std::memory_order_acq_rel));
  }

  // Owner, on a page it did not dequeue (its active page): takes every block, leaves the flag.
  // If the flag is set, the page stays queued (or about to be) and will be dequeued later.
  RemoteWord TakeBlocksKeepFlag() {
    // Relaxed load: only a guess at the value for the CAS below.
    uint64_t old = word_.load(std::memory_order_relaxed);
    for (;;) {
      RemoteWord w(old);
      if (w.head() == nullptr) return RemoteWord(0);
      // Acquire on success: see the links of the blocks taken. Nothing to publish.
      if (word_.compare_exchange_weak(old, w.pending() ? kFlagOnly : 0,
                                      std::memory_order_acquire, std::memory_order_relaxed)) {
        return RemoteWord(old & ~RemoteWord::kFlag);
      }
    }
  }

  // The holder of an exited owner's claim, before moving the page to a new owner: sets the flag
  // if it is clear, so no producer can enqueue the page while the owner pointer changes. Returns
  // false (and changes nothing) when the flag was already set: the page is queued or a producer
  // is about to queue it on the current owner, so it must not be moved.
  bool TryAcquireFlag() {
    // Relaxed load: only a guess at the value for the CAS below.
    uint64_t old = word_.load(std::memory_order_relaxed);
    for (;;) {
      if (RemoteWord(old).pending()) return false;
      // Acquire on success: pairs with the release in TakeAll of the previous flag holder.
      if (word_.compare_exchange_weak(old, old | RemoteWord::kFlag, std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
        return true;
      }
    }
  }

  // A snapshot. Relaxed: callers use it as a hint (e.g. "are there remote frees to collect?") or
  // at quiescence in invariant checks, never to decide ownership.
  RemoteWord Peek() const { return RemoteWord(word_.load(std::memory_order_relaxed)); }

 private:
  static constexpr uint64_t kFlagOnly = RemoteWord::kFlag;
  std::atomic<uint64_t> word_{0};
};

}  // namespace mf2

#endif  // MF2_REMOTE_STACK_H_
