// Checked blocks for the stress tests: every block a harness allocates carries a stamp (who
// allocated it, when, how large, and a cookie derived from its address) that is verified before
// the block is freed, and a shadow set of live blocks proves no block is handed out twice
// (invariants 3 and 4 of docs/protocol.md). A block handed out while live, a payload the
// allocator wrote into while the block was live, a stamp that turns up at another address, or a
// harness that frees what it does not hold fails the test where it happens.
//
//   stress::CheckedBlocks blocks;                      // shared by every thread of a test
//   void* p = blocks.New(heap, size, thread, seq++);   // allocate, check, stamp
//   stress::BlockStamp s = blocks.Free(heap, p);       // verify, forget, free; s.owner: whose
//   EXPECT_EQ(blocks.live(), 0u);                      // at the end
//
// `heap` is an explicit heap, or nullptr for MF2's thread-local heap (mf2::Allocate, mf2::Free).
#ifndef MF2_STRESS_CHECKED_BLOCKS_H_
#define MF2_STRESS_CHECKED_BLOCKS_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <unordered_set>

#include "gtest/gtest.h"
#include "mf2/heap.h"
#include "mf2/mf2.hpp"
#include "stress/stress_util.h"

namespace mf2 {
namespace stress {

// What a block's stamp says about it.
struct BlockStamp {
  uint32_t owner = 0;     // the allocating thread, in the test's own numbering
  uint32_t size = 0;      // bytes requested (every stress test asks for less than 4 GiB)
  uint64_t sequence = 0;  // the owner's count of allocations when it allocated the block
};

inline bool operator==(const BlockStamp& a, const BlockStamp& b) {
  return a.owner == b.owner && a.size == b.size && a.sequence == b.sequence;
}

// The first bytes of a stamped block, in this order:
//   [0, 16)                      the BlockStamp
//   [16, 24)                     cookie: Mix of the block's address and the BlockStamp
//   [24, min(size, kStampEnd))   a byte pattern derived from the cookie
// The cookie makes a stamp valid at its own address only, so a block whose bytes were copied
// from another live block (or a stamp left at another address) fails as well as an overwrite.
struct StampHeader {
  BlockStamp stamp;
  uint64_t cookie;
};
static_assert(sizeof(BlockStamp) == 16, "BlockStamp: [0, 16) of the block");
static_assert(offsetof(StampHeader, cookie) == 16 && sizeof(StampHeader) == 24,
              "StampHeader: the stamp, then the cookie at [16, 24)");

// The smallest block that holds a stamp; CheckedBlocks::New allocates at least this much.
constexpr size_t kMinStampedSize = sizeof(StampHeader);
// The pattern covers the block up to here (or its end): enough to catch a stray write near the
// allocator's own words without making every free walk a whole large block.
constexpr size_t kStampEnd = 256;

inline uint64_t StampCookie(const void* p, const BlockStamp& s) {
  const uint64_t who = uint64_t{s.owner} << 32 | s.size;
  return Mix(Mix(reinterpret_cast<uintptr_t>(p), s.sequence), who);
}

inline unsigned char PatternByte(uint64_t cookie, size_t i) {
  return static_cast<unsigned char>(static_cast<unsigned char>(Mix(cookie, 7)) + i);
}

// Writes `s` (s.size >= kMinStampedSize, the block's requested size) into the block at `p`.
inline void WriteStamp(void* p, const BlockStamp& s) {
  const StampHeader header{s, StampCookie(p, s)};
  std::memcpy(p, &header, sizeof(header));
  unsigned char* bytes = static_cast<unsigned char*>(p);
  const size_t end = s.size < kStampEnd ? s.size : kStampEnd;
  for (size_t i = sizeof(StampHeader); i < end; ++i) bytes[i] = PatternByte(header.cookie, i);
}

// Whether the block at `p` carries an intact stamp (header, cookie for this address, pattern);
// if so, *out is the stamp WriteStamp wrote.
inline bool ReadStamp(const void* p, BlockStamp* out) {
  StampHeader header;
  std::memcpy(&header, p, sizeof(header));
  const BlockStamp& s = header.stamp;
  if (s.size < kMinStampedSize || header.cookie != StampCookie(p, s)) return false;
  const unsigned char* bytes = static_cast<const unsigned char*>(p);
  const size_t end = s.size < kStampEnd ? s.size : kStampEnd;
  for (size_t i = sizeof(StampHeader); i < end; ++i) {
    if (bytes[i] != PatternByte(header.cookie, i)) return false;
  }
  *out = s;
  return true;
}

// Every pointer the harness holds live, sharded under mutexes. Insert after allocating (fails
// if the allocator handed out a live block again: invariant 4), erase before freeing (fails on a
// harness double free, so a failure in MF2's own checks is never the harness's fault).
class ShadowSet {
 public:
  bool Insert(const void* p) {
    Shard& s = shards_[Hash(p)];
    std::lock_guard<std::mutex> lock(s.mu);
    return s.set.insert(p).second;
  }
  bool Erase(const void* p) {
    Shard& s = shards_[Hash(p)];
    std::lock_guard<std::mutex> lock(s.mu);
    return s.set.erase(p) == 1;
  }
  size_t Size() {
    size_t n = 0;
    for (Shard& s : shards_) {
      std::lock_guard<std::mutex> lock(s.mu);
      n += s.set.size();
    }
    return n;
  }

 private:
  static constexpr size_t kShards = 64;
  static size_t Hash(const void* p) {
    return static_cast<size_t>(Mix(reinterpret_cast<uintptr_t>(p), 0) >> 58) % kShards;
  }
  struct Shard {
    std::mutex mu;
    std::unordered_set<const void*> set;
  };
  Shard shards_[kShards];
};

// Allocation and free with the checks above, for any number of threads at once (the blocks a
// thread stamps or verifies are its own at that moment; the shadow set takes its locks).
class CheckedBlocks {
 public:
  // Allocates max(size, kMinStampedSize) bytes from `heap` (the thread-local heap if null),
  // checks that the block is new (not live) and large enough, and stamps it with (owner,
  // sequence). nullptr, with a failure recorded, if the allocation failed.
  void* New(Heap* heap, size_t size, uint32_t owner, uint64_t sequence) {
    if (size < kMinStampedSize) size = kMinStampedSize;
    void* p = heap != nullptr ? heap->Allocate(size) : mf2::Allocate(size);
    EXPECT_NE(p, nullptr) << "allocation of " << size << " bytes failed";
    if (p == nullptr) return nullptr;
    EXPECT_GE(mf2::UsableSize(p), size) << p;
    EXPECT_TRUE(shadow_.Insert(p)) << "block handed out while live (invariant 4): " << p;
    EXPECT_LE(size, size_t{UINT32_MAX});
    WriteStamp(p, BlockStamp{owner, static_cast<uint32_t>(size), sequence});
    return p;
  }

  // Verifies the stamp of `p` (a block New returned), forgets it and frees it into `heap` (the
  // thread-local heap if null). Returns its stamp, so the caller can check whose block it was;
  // a default BlockStamp, with a failure recorded, if the stamp was not intact.
  BlockStamp Free(Heap* heap, void* p) {
    BlockStamp s;
    if (!ReadStamp(p, &s)) {
      ADD_FAILURE() << "stamp overwritten in a live block (invariant 4): " << p;
    }
    EXPECT_TRUE(shadow_.Erase(p)) << "harness frees a block it does not hold: " << p;
    heap != nullptr ? heap->Free(p) : mf2::Free(p);
    return s;
  }

  // Blocks allocated through New and not freed yet.
  size_t live() { return shadow_.Size(); }

 private:
  ShadowSet shadow_;
};

}  // namespace stress
}  // namespace mf2

#endif  // MF2_STRESS_CHECKED_BLOCKS_H_
