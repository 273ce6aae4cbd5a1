// stress::CheckedBlocks fails where a stress test must: a payload byte changed while the block
// was live, a stamp copied to another address, a block freed that the harness does not hold.
// The stress tests rely on these checks; this test keeps them from silently passing.
#include "stress/checked_blocks.h"

#include <cstring>

#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"
#include "mf2/mf2.hpp"

namespace mf2 {
namespace {

TEST(CheckedBlocksTest, IntactBlockPassesAndNamesItsOwner) {
  stress::CheckedBlocks blocks;
  void* p = blocks.New(nullptr, 100, /*owner=*/7, /*sequence=*/42);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(blocks.live(), 1u);
  const stress::BlockStamp s = blocks.Free(nullptr, p);
  EXPECT_EQ(s.owner, 7u);
  EXPECT_EQ(s.size, 100u);
  EXPECT_EQ(s.sequence, 42u);
  EXPECT_EQ(blocks.live(), 0u);
}

TEST(CheckedBlocksTest, SmallRequestsAreRaisedToAStamp) {
  stress::CheckedBlocks blocks;
  void* p = blocks.New(nullptr, 1, 0, 0);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(blocks.Free(nullptr, p).size, stress::kMinStampedSize);
}

TEST(CheckedBlocksTest, EveryChangedByteOfTheStampFails) {
  constexpr size_t kSize = 300;  // beyond kStampEnd: the pattern stops there
  for (size_t i = 0; i < stress::kStampEnd; ++i) {
    stress::CheckedBlocks blocks;
    void* p = blocks.New(nullptr, kSize, 1, i);
    ASSERT_NE(p, nullptr);
    static_cast<unsigned char*>(p)[i] ^= 0x10;
    EXPECT_NONFATAL_FAILURE(blocks.Free(nullptr, p), "stamp overwritten in a live block");
  }
}

TEST(CheckedBlocksTest, AStampCopiedToAnotherBlockFails) {
  stress::CheckedBlocks blocks;
  void* a = blocks.New(nullptr, 64, 1, 1);
  void* b = blocks.New(nullptr, 64, 1, 1);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::memcpy(b, a, 64);  // b now says what a says, at the wrong address
  EXPECT_NONFATAL_FAILURE(blocks.Free(nullptr, b), "stamp overwritten in a live block");
  blocks.Free(nullptr, a);
}

TEST(CheckedBlocksTest, FreeingABlockTheHarnessDoesNotHoldFails) {
  stress::CheckedBlocks mine;
  stress::CheckedBlocks theirs;
  void* p = theirs.New(nullptr, 64, 1, 1);
  ASSERT_NE(p, nullptr);
  EXPECT_NONFATAL_FAILURE(mine.Free(nullptr, p), "harness frees a block it does not hold");
  EXPECT_EQ(theirs.live(), 1u);  // freed through `mine`; `theirs` still counts it
}

}  // namespace
}  // namespace mf2
