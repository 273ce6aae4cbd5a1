// LiveSet's index semantics against a plain vector: ops name live blocks by index, oldest first,
// and the committed corpora mean those indices, so whatever LiveSet does inside (tombstones, a
// Fenwick tree, compaction), block i must be the i-th oldest live block after any sequence of
// holds and takes.
#include "fuzz/fuzz_std.h"  // first: the standard library without coverage

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "fuzz/live_set.h"
#include "gtest/gtest.h"

namespace mf2_fuzz {
namespace {

// Fake blocks: addresses inside this array are no MF2 memory (PageOf is null), so LiveSet's
// per-page shadow ignores them and only its order and its range set are exercised.
alignas(16) char g_arena[16 * 8192];

Live Block(size_t slot) {
  return Live{&g_arena[16 * slot], 16, 16, slot, /*large=*/false};
}

void ExpectSame(const LiveSet& set, const std::vector<Live>& model) {
  ASSERT_EQ(set.size(), model.size());
  ASSERT_EQ(set.empty(), model.empty());
  for (size_t i = 0; i < model.size(); ++i) ASSERT_EQ(set[i].p, model[i].p) << "index " << i;
}

TEST(LiveSetTest, IndicesNameTheLiveBlocksOldestFirst) {
  LiveSet set(/*max_blocks=*/4096, /*max_bytes=*/size_t{1} << 30);
  std::vector<Live> model;
  std::vector<size_t> free_slots;
  for (size_t s = 8192; s-- > 0;) free_slots.push_back(s);
  std::mt19937 rng(42);
  for (int step = 0; step < 20000; ++step) {
    const uint32_t r = rng() % 100;
    // Phases of growth and of shrinking, so the set passes every compaction threshold.
    const bool grow = (step / 2000) % 2 == 0;
    if (model.empty() || (grow ? r < 70 : r < 25)) {
      if (free_slots.empty()) continue;
      const Live b = Block(free_slots.back());
      free_slots.pop_back();
      set.AddStamped(b);
      model.push_back(b);
    } else if (r < 97) {
      const size_t i = rng() % model.size();
      const Live b = set.Take(i);
      ASSERT_EQ(b.p, model[i].p) << "step " << step << ", index " << i;
      free_slots.push_back(b.stamp);
      model.erase(model.begin() + static_cast<long>(i));
    } else {
      // Every third block from a random start, by its index before the call.
      const size_t phase = rng() % 3;
      std::vector<Live> taken;
      set.TakeIf([&](size_t i, const Live& b) {
        if (i % 3 != phase) return false;
        taken.push_back(b);
        return true;
      });
      std::vector<Live> kept;
      std::vector<Live> expected;
      for (size_t i = 0; i < model.size(); ++i) {
        (i % 3 == phase ? expected : kept).push_back(model[i]);
      }
      ASSERT_EQ(taken.size(), expected.size());
      for (size_t i = 0; i < taken.size(); ++i) {
        ASSERT_EQ(taken[i].p, expected[i].p);
        free_slots.push_back(taken[i].stamp);
      }
      model = kept;
    }
    if (step % 97 == 0 || model.size() < 70) ExpectSame(set, model);
  }
  ExpectSame(set, model);
  const std::vector<Live> all = set.TakeAll();
  ASSERT_EQ(all.size(), model.size());
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].p, model[i].p);
  EXPECT_TRUE(set.empty());
  // Usable again after TakeAll.
  set.AddStamped(Block(0));
  EXPECT_EQ(set.size(), 1u);
  EXPECT_EQ(set[0].p, Block(0).p);
  EXPECT_EQ(set.Take(0).p, Block(0).p);
}

TEST(LiveSetTest, ABlockOverlappingALiveOneIsAnOracleFailure) {
  LiveSet set(/*max_blocks=*/16, /*max_bytes=*/size_t{1} << 20);
  set.AddStamped(Block(1));
  EXPECT_DEATH(set.AddStamped(Live{&g_arena[16 + 8], 8, 8, 99, false}), "overlaps a live block");
}

}  // namespace
}  // namespace mf2_fuzz
