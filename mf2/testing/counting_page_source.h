// A PageSource for tests: forwards to the global OsPageSource, counts span allocations and
// frees, and fails allocations on demand, so tests can prove exactly when a new page was taken.
// A one-shot hook run inside FreeSpan lets a test act in the middle of whatever released the span
// (e.g. another heap's completion during an idle sweep: sweep_recheck_test).
#ifndef MF2_TESTING_COUNTING_PAGE_SOURCE_H_
#define MF2_TESTING_COUNTING_PAGE_SOURCE_H_

#include <atomic>
#include <cstdint>

#include "mf2/page_source.h"

namespace mf2 {
namespace testing {

class CountingPageSource final : public PageSource {
 public:
  Page* AllocateSpan(uint32_t slices) override {
    if (fail_.load(std::memory_order_relaxed)) return nullptr;
    allocated_.fetch_add(1, std::memory_order_relaxed);
    return OsPageSource::Global().AllocateSpan(slices);
  }
  void FreeSpan(Page* head) override {
    freed_.fetch_add(1, std::memory_order_relaxed);
    // Relaxed: the hook is set by the test thread before the operation that frees the span.
    if (FreeHook hook = free_hook_.exchange(nullptr, std::memory_order_relaxed)) {
      hook(head, free_hook_arg_);
    }
    OsPageSource::Global().FreeSpan(head);
  }
  void AddTo(Stats*) override {}

  // Spans handed out / given back so far.
  uint64_t allocated() const { return allocated_.load(std::memory_order_relaxed); }
  uint64_t freed() const { return freed_.load(std::memory_order_relaxed); }
  uint64_t outstanding() const { return allocated() - freed(); }
  // While set, every AllocateSpan fails (returns nullptr).
  void set_fail(bool fail) { fail_.store(fail, std::memory_order_relaxed); }
  // The next FreeSpan calls hook(span, arg) once (before giving the span back), on the thread
  // that frees the span. Not for concurrent use: set it while no other thread frees spans here.
  using FreeHook = void (*)(Page* head, void* arg);
  void set_free_hook(FreeHook hook, void* arg) {
    free_hook_arg_ = arg;
    // Relaxed: as in FreeSpan.
    free_hook_.store(hook, std::memory_order_relaxed);
  }

 private:
  // Relaxed: test counters, read after the threads that bump them are joined.
  std::atomic<uint64_t> allocated_{0};
  std::atomic<uint64_t> freed_{0};
  std::atomic<bool> fail_{false};
  std::atomic<FreeHook> free_hook_{nullptr};
  void* free_hook_arg_ = nullptr;
};

}  // namespace testing
}  // namespace mf2

#endif  // MF2_TESTING_COUNTING_PAGE_SOURCE_H_
