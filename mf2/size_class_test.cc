#include "mf2/size_class.h"

#include "gtest/gtest.h"

namespace mf2 {
namespace {

TEST(SizeClass, EveryRequestFitsItsClassWithBoundedWaste) {
  for (size_t s = 1; s <= kMaxClassSize; ++s) {
    uint32_t k = SizeToClass(s);
    ASSERT_GE(k, 1u);
    ASSERT_LT(k, kNumClasses);
    const uint32_t c = ClassInfo(k).size;
    ASSERT_GE(c, s) << "class too small for " << s;
    if (k > 1) ASSERT_LT(ClassInfo(k - 1).size, s) << "a smaller class would fit " << s;
    if (s > 128) {
      // Internal fragmentation at most 12.5% of the request.
      ASSERT_LE((c - s) * 8, s) << "waste above 12.5% for " << s;
    } else {
      ASSERT_LT(c - s, kMinAlign);
    }
  }
}

TEST(SizeClass, MidRangeOfTheDesignNoteIsExact) {
  for (size_t kib : {2, 4, 8, 16, 32, 40, 52}) {
    EXPECT_EQ(ClassInfo(SizeToClass(kib * 1024)).size, kib * 1024) << kib << " KiB";
  }
}

TEST(SizeClass, SpansHaveBoundedTailAndEnoughBlocks) {
  for (uint32_t k = 1; k < kNumClasses; ++k) {
    const SizeClassInfo& c = ClassInfo(k);
    size_t span = c.slices * kSliceSize;
    EXPECT_LE((span - size_t{c.capacity} * c.size) * 8, span) << "tail above 12.5% for " << c.size;
    EXPECT_GE(c.capacity, kMinBlocksPerSpan) << c.size;
    if (c.size > kDeepSpanMinSize && c.slices < kMaxSlicesPerSpan) {
      EXPECT_GE(c.capacity, kMinBlocksPerDeepSpan) << c.size;
    }
    EXPECT_LE(c.slices, kMaxSlicesPerSpan);
    EXPECT_EQ(c.size % kMinAlign, 0u);
  }
}

// The one-multiply block-start test of Page::IsBlockStart, checked exhaustively: for every class
// and every offset inside its span (and a little beyond), it holds exactly at the starts of
// blocks 0..capacity-1.
TEST(SizeClass, BlockStartTestIsExactInsideEverySpan) {
  for (uint32_t k = 1; k < kNumClasses; ++k) {
    const SizeClassInfo& c = ClassInfo(k);
    const uint64_t span = c.slices * kSliceSize;
    for (uint64_t off = 0; off < span + 4 * c.size; ++off) {
      const bool expected = off % c.size == 0 && off / c.size < c.capacity;
      ASSERT_EQ(off * c.div_mul < c.div_limit, expected) << "class " << c.size << " off " << off;
    }
  }
}

TEST(SizeClass, SmallTableMatchesTheComputedClasses) {
  for (size_t s = 0; s <= kSmallMax; ++s) {
    ASSERT_EQ(SizeToClass(s), internal::SlowSizeToClass(s)) << s;
  }
}

}  // namespace
}  // namespace mf2
