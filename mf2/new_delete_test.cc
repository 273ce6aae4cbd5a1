// operator new and delete with MF2 as the process's allocator (malloc_shim.cc linked in): the
// fast path serves only cached blocks and tail-calls NewSlow for everything else (heap.h
// AllocateOrTailCall), so these tests go down each of those other ways: the first allocation of
// a class (empty cache), large sizes, a corrupt cached block, exhaustion with and without a
// new-handler. The nothrow forms inline Allocate itself (no frame either: its slow paths are
// noexcept, so they are tail calls).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/check.h"
#include "mf2/heap.h"
#include "mf2/size_class.h"
#include "mf2/thread_heap.h"

namespace mf2 {
namespace {

// An allocation no machine can satisfy (MF2 refuses it before asking the OS).
constexpr size_t kAbsurd = size_t{1} << 62;

TEST(NewDeleteTest, EveryClassAndLargeSizes) {
  std::vector<size_t> sizes;
  for (uint32_t k = 1; k < kNumClasses; ++k) sizes.push_back(ClassInfo(k).size);
  sizes.push_back(kMaxClassSize + 1);
  sizes.push_back(size_t{3} << 20);
  for (int round = 0; round < 3; ++round) {  // round 0 finds the caches empty, 1 and 2 full
    std::vector<unsigned char*> blocks;
    for (size_t n : sizes) {
      auto* p = static_cast<unsigned char*>(::operator new(n));
      ASSERT_NE(p, nullptr);
      std::memset(p, 0xab, n);
      EXPECT_GE(Heap::UsableSize(p), n);
      blocks.push_back(p);
      auto* q = new unsigned char[n];
      q[0] = q[n - 1] = 1;
      delete[] q;
      auto* r = static_cast<unsigned char*>(::operator new(n, std::nothrow));
      ASSERT_NE(r, nullptr);
      r[0] = r[n - 1] = 2;
      ::operator delete(r, std::nothrow);
    }
    for (size_t i = 0; i < blocks.size(); ++i) ::operator delete(blocks[i], sizes[i]);
  }
}

TEST(NewDeleteTest, ExhaustionThrowsBadAlloc) {
  EXPECT_THROW(static_cast<void>(::operator new(kAbsurd)), std::bad_alloc);
  EXPECT_THROW(static_cast<void>(::operator new[](kAbsurd)), std::bad_alloc);
  EXPECT_EQ(::operator new(kAbsurd, std::nothrow), nullptr);
  // The thread can still allocate (the failed attempts ended their operations).
  void* p = ::operator new(48);
  ::operator delete(p);
}

int g_handler_calls = 0;
void GiveUp() {
  ++g_handler_calls;
  std::set_new_handler(nullptr);  // the next failure throws
}

TEST(NewDeleteTest, NewHandlerRunsUntilItGivesUp) {
  g_handler_calls = 0;
  std::set_new_handler(&GiveUp);
  EXPECT_THROW(static_cast<void>(::operator new(kAbsurd)), std::bad_alloc);
  EXPECT_EQ(g_handler_calls, 1);
  EXPECT_EQ(std::get_new_handler(), nullptr);
}

std::vector<ErrorKind>* g_reports = nullptr;
void Record(const ErrorReport& report) { g_reports->push_back(report.kind); }

// A block written to after its delete, while it sits in the thread's cache: the next operator
// new of its class finds the canary broken, leaves the block where it is and goes the slow way,
// whose Allocate reports it and hands out another block.
TEST(NewDeleteTest, CorruptCachedBlockIsReportedNotReused) {
  if (ThreadHeap()->cache(SizeToClass(64)).cap() == 0) GTEST_SKIP() << "caches are off";
  std::vector<ErrorKind> reports;
  g_reports = &reports;
  const ErrorHandler previous = SetErrorHandler(&Record);
  auto* keep = static_cast<uint64_t*>(::operator new(64));  // the cache is primed with a refill
  auto* victim = static_cast<uint64_t*>(::operator new(64));
  ::operator delete(victim);  // on top of the class's cache
  victim[1] = 0x4141414141414141;  // word 1 holds the canary
  auto* next = static_cast<uint64_t*>(::operator new(64));
  SetErrorHandler(previous);
  g_reports = nullptr;
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0], ErrorKind::kCorruptFreeList);
  EXPECT_NE(next, victim);
  ::operator delete(next);
  ::operator delete(keep);
}

}  // namespace
}  // namespace mf2
