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
    EXPECT_LE(c.slices, kMaxSlicesPerSpan);
    EXPECT_EQ(c.size % kMinAlign, 0u);
  }
}

TEST(SizeClass, BlockIndexMagicIsExactInsideEverySpan) {
  for (uint32_t k = 1; k < kNumClasses; ++k) {
    const SizeClassInfo& c = ClassInfo(k);
    for (uint64_t i = 0; i <= c.capacity; ++i) {
      for (int64_t d : {-1, 0, 1, 15}) {
        int64_t off = static_cast<int64_t>(i * c.size) + d;
        if (off < 0 || off >= static_cast<int64_t>(c.slices * kSliceSize)) continue;
        uint64_t idx = (static_cast<uint64_t>(off) * c.magic) >> kIndexShift;
        ASSERT_EQ(idx, static_cast<uint64_t>(off) / c.size) << "class " << c.size << " off " << off;
      }
    }
  }
}

}  // namespace
}  // namespace mf2
