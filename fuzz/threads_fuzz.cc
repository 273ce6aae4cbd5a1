// threads_fuzz: 2..3 real worker threads, each with its own heap, driven in lock-step.
//
// The driver hands each step to the worker the input names and waits until it is done (mutex
// and condition variable: every hand-off is visible to TSan), so a schedule replays exactly.
// BURST is the exception: it releases every worker at once on disjoint work, so TSan also sees
// the remote-free protocol under real concurrency (the shadow outcome is still deterministic).
//
// Schedule: a config byte (workers = 2 + b % 2, pending budget = 1 + (b / 2) % 8, cache policy
// (b / 16) % 4: fuzz_util.h CacheBytesForMode, default / off / small), then ops.
// Each op byte names a worker (high nibble % workers) and an op (low nibble % kNumOps; the values
// of enum class Op):
//   0 ALLOC   size count    worker allocates 1 + count % 16 blocks of SizeFromByte(size)
//   1 FREE    idx16         worker frees live block idx % live, whoever allocated it (a block
//                           of another worker's page is a remote free; of an exited one, a
//                           dead-owner drain)
//   2 EXIT    -             worker's thread exits (its heap is released with its live blocks);
//                           if it has exited already (LATE): a real thread after its exit hook,
//                           as glibc's teardown and a late key destructor run it, frees the
//                           newest live block and allocates one through the dead sentinel
//                           (fuzz_util.h DeadSentinel: no heap; the allocation takes a heap and
//                           releases it at once), then ends
//   3 BURST   count         all running workers at once: the r-th running worker frees every
//                           live block at index i with i % (2 * running) == r (blocks of all
//                           owners), then allocates count % 16 blocks
//   4 BUDGET  b r           Policy::pending_budget = 1 + b % 8, route and gates from r
//                           (fuzz_util.h FuzzPolicy: route_p / cda adoption between workers,
//                           idle reclamation), all workers parked; bits 3..4 of b, if not 0, the
//                           cache policy of heaps taken from now on (1 off, 2 small, 3 default)
//   5 START   -             a new thread in the worker's slot (takes an idle heap over whole, or
//                           maps a new one); while the slot is empty, idle heaps are adopted from
//   6 FILL    size mode     the worker allocates cap + 1 blocks of that class, then frees them,
//                           newest first, until its cache of the class is full; mode odd: one
//                           more free, into the full cache (the older half goes to the pages)
//   7 FLUSH   -             the worker's Heap::FlushCaches: its caches empty afterwards
//   8 IDLE    size          idle flush: the worker fills its cache of that class (FILL) and goes
//                           idle (owners idle for reclamation, reclamation on, for this op); the
//                           other running workers, all at once, free every live block on its
//                           pages (pages come back whole, freers sweep); then another worker runs
//                           the background reclaimer's pass on it (BackgroundReclaimPass; the
//                           long-idle flush, slot pages too, when an odd number is left live)
// FILL then EXIT is a thread exit with a full cache (the heap's release flushes it).
// Ops of a worker whose thread is not running are skipped (their arguments still consumed).
// After every op, with all workers parked: the pages the op allocated from or freed into
// (fuzz_util.h Checker::Touched: Page::CheckInvariants, exact block conservation per page with
// the caches, CheckAll's per-page checks). Every FullCheckEvery() ops (16;
// MF2_FUZZ_FULL_CHECK_EVERY) and at the end of the input: HeapRegistry::CheckAll(true)
// (invariants 1, 5-8, 11, 12), the remote ledger (2) and exact conservation on every page
// (Checker::Full). Payloads are stamped by the allocating worker and verified by
// the freeing one (4). At the end every live block is freed by the workers, every thread exits,
// and every span must be back in the page source (9).
#include "fuzz/fuzz_std.h"  // first: the standard library without coverage

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "fuzz/live_set.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"

namespace mf2_fuzz {
namespace {

using mf2::Heap;

// The op numbers of the byte encoding (the table above). Never renumber: the corpus means them.
enum class Op : uint8_t {
  kAlloc = 0,
  kFree = 1,
  kExit = 2,  // LATE when the worker has exited already
  kBurst = 3,
  kBudget = 4,
  kStart = 5,
  kFill = 6,
  kFlush = 7,
  kIdle = 8,
};
constexpr int kNumOps = static_cast<int>(Op::kIdle) + 1;
constexpr int kMaxWorkers = 3;
constexpr int kMaxOps = 1024;

// One OS thread owning one heap; runs the tasks it is given until told to stop.
class Worker {
 public:
  // Returns once the thread has its heap, so the driver's checks never overlap AcquireHeap.
  Worker() : thread_([this] { Loop(); }) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return started_; });
  }
  ~Worker() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  // Hands `task` to the worker; Wait() returns once it has run.
  void Post(std::function<void(Heap*)> task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      task_ = std::move(task);
      has_task_ = true;
    }
    cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return !has_task_; });
  }
  void Run(std::function<void(Heap*)> task) {
    Post(std::move(task));
    Wait();
  }
  // The worker's heap. Written before the constructor returns (under mu_), constant afterwards;
  // the driver reads its owner-only fields only while the worker is parked (the hand-offs order
  // them).
  Heap* heap() const { return heap_; }

 private:
  void Loop() {
    Heap* heap = AcquireHeap();  // thread start
    std::unique_lock<std::mutex> lock(mu_);
    heap_ = heap;
    started_ = true;
    cv_.notify_all();
    for (;;) {
      cv_.wait(lock, [this] { return has_task_ || stop_; });
      if (has_task_) {
        task_(heap);
        task_ = nullptr;
        has_task_ = false;
        cv_.notify_all();
        continue;
      }
      break;  // stop_
    }
    lock.unlock();
    mf2::HeapRegistry::Global().ReleaseHeap(heap);  // thread exit
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void(Heap*)> task_;
  bool has_task_ = false;
  bool stop_ = false;
  bool started_ = false;
  Heap* heap_ = nullptr;
  std::thread thread_;  // last: starts after the fields above exist
};

// Runs on the allocating thread: stamps a block just handed out; the driver holds it
// (LiveSet::AddStamped).
Live Stamped(void* p, size_t size, uint64_t stamp) {
  const size_t usable = Heap::UsableSize(p);
  FUZZ_CHECK(usable >= size, "usable size >= requested");
  Stamp(p, usable, stamp);
  return Live{p, size, usable, stamp, mf2::PageOf(p) == nullptr};
}

// Runs on a worker: allocates `count` blocks of `size`, stamps them, appends them to `out`.
void AllocateOn(Heap* heap, size_t size, int count, uint64_t first_stamp, std::vector<Live>* out) {
  for (int i = 0; i < count; ++i) {
    // The top of the class's cache, which the allocation hands out if the cache is not empty.
    const void* cached = nullptr;
    if (size <= mf2::kMaxClassSize) {
      const Heap::Magazine& m = heap->cache(mf2::SizeToClass(size));
      if (m.n() > 0) cached = m.slots()[m.n() - 1];
    }
    void* p = heap->Allocate(size);
    FUZZ_CHECK(p != nullptr, "allocation succeeds");
    if (mf2::Page* page = mf2::PageOf(p)) {
      // A block cached while the heap owned its page stays valid after the page was adopted by
      // another heap (route_p, cda, idle sweeps; page.h): it counts in that page's used().
      FUZZ_CHECK(!page->in_use() || page->owner_relaxed() == heap || p == cached,
                 "a new block comes from a page of the allocating heap, or from its cache");
    }
    out->push_back(Stamped(p, size, first_stamp + static_cast<uint64_t>(i)));
  }
}

// Runs on a worker: verifies and frees `blocks`.
void FreeOn(Heap* heap, const std::vector<Live>& blocks) {
  for (const Live& b : blocks) {
    Verify(b);
    heap->Free(b.p);
  }
}

class State {
 public:
  explicit State(uint8_t config) : n_(2 + config % 2) {
    budget_ = 1 + (config / 2) % 8;
    CacheMode() = (config / 16) % 4;
    SetBudget(budget_);
    for (int w = 0; w < n_; ++w) workers_[w] = new Worker();
  }

  ~State() {
    // Every worker frees a share of what is left (local and remote frees), then all exit.
    for (int w = 0; w < n_; ++w) {
      if (workers_[w] == nullptr) workers_[w] = new Worker();
    }
    std::vector<std::vector<Live>> share(n_);
    const std::vector<Live> all = live_.TakeAll();
    for (size_t i = 0; i < all.size(); ++i) share[i % n_].push_back(all[i]);
    for (int w = 0; w < n_; ++w) {
      workers_[w]->Post([&share, w](Heap* h) { FreeOn(h, share[w]); });
    }
    for (int w = 0; w < n_; ++w) workers_[w]->Wait();
    for (int w = 0; w < n_; ++w) delete workers_[w];
    frame_.Finish(live_.checker());
  }

  // One op of worker (high nibble % workers), run while every other worker is parked (BURST and
  // IDLE excepted). Ops of a worker whose thread is not running read their arguments and do
  // nothing.
  void Perform(Reader& in) {
    const OpByte op = SplitOpByte(in.Byte(), n_, kNumOps);
    const int w = op.who;
    switch (static_cast<Op>(op.op)) {
      case Op::kAlloc: return OpAlloc(w, in);
      case Op::kFree: return OpFree(w, in);
      case Op::kExit: return OpExit(w);
      case Op::kBurst: return OpBurst(in);
      case Op::kBudget: return OpBudget(in);
      case Op::kStart: return OpStart(w);
      case Op::kFill: return OpFill(w, in);
      case Op::kFlush: return OpFlush(w);
      case Op::kIdle: return OpIdle(w, in);
    }
  }

  // Workers parked. `full`: every page and heap; else the pages the step touched.
  void CheckAfterStep(bool full) {
    if (!full) {
      Heap* heaps[kMaxWorkers] = {};
      for (int w = 0; w < n_; ++w) {
        if (workers_[w] != nullptr) heaps[w] = workers_[w]->heap();
      }
      live_.checker().Touched(true, heaps, kMaxWorkers);
      return;
    }
    mf2::HeapRegistry::Global().CheckAll(true);
    frame_.ledger().Check();
    live_.checker().Full(true);
  }

 private:
  // ---- the ops (the table at the top of the file), each reading its own argument bytes ----

  void OpAlloc(int w, Reader& in) {
    const size_t size = SizeFromByte(in.Byte());
    const int count = 1 + in.Byte() % 16;
    if (workers_[w] == nullptr || live_.Full(size * static_cast<size_t>(count))) return;
    std::vector<Live> got;
    const uint64_t stamp = NextStamps(w, count);
    workers_[w]->Run([&](Heap* h) { AllocateOn(h, size, count, stamp, &got); });
    Hold(got);
  }

  void OpFree(int w, Reader& in) {
    const uint16_t idx = in.U16();
    if (workers_[w] == nullptr || live_.empty()) return;
    FreeBy(workers_[w], idx % live_.size());
  }

  // EXIT of a running worker; LATE of an exited one: on a thread of its own while every worker
  // is parked, the newest live block freed and one block allocated after the exit hook.
  void OpExit(int w) {
    if (workers_[w] != nullptr) {
      delete workers_[w];
      workers_[w] = nullptr;
      return;
    }
    std::vector<Live> one;
    if (!live_.empty()) one.push_back(live_.Take(live_.size() - 1));
    const size_t size = SizeFromByte(static_cast<uint8_t>(seq_ * 37 % 240));
    const bool alloc = !live_.Full(size);
    const uint64_t stamp = NextStamps(w, 1);
    std::vector<Live> got;
    std::thread([&] {
      Heap* dead = DeadSentinel();
      FreeOn(dead, one);
      if (!alloc) return;
      void* p = dead->Allocate(size);
      FUZZ_CHECK(p != nullptr, "an allocation after the exit hook succeeds");
      got.push_back(Stamped(p, size, stamp));
    }).join();
    Hold(got);
  }

  // BURST: every running worker at once, on disjoint work: the r-th frees every live block at an
  // index i with i % (2 * running) == r, then allocates `count` blocks.
  void OpBurst(Reader& in) {
    const int count = in.Byte() % 16;
    std::vector<Worker*> running;
    for (int w = 0; w < n_; ++w) {
      if (workers_[w] != nullptr) running.push_back(workers_[w]);
    }
    const size_t n = running.size();
    if (n == 0) return;
    std::vector<std::vector<Live>> frees(n);
    live_.TakeIf([&](size_t i, const Live& b) {
      if (i % (2 * n) >= n) return false;
      frees[i % (2 * n)].push_back(b);
      return true;
    });
    const size_t size = SizeFromByte(static_cast<uint8_t>(count * 37 + 5));
    const bool alloc = count > 0 && !live_.Full(size * static_cast<size_t>(count) * n);
    std::vector<std::vector<Live>> got(n);
    std::vector<uint64_t> stamps(n);
    for (size_t r = 0; r < n; ++r) stamps[r] = NextStamps(static_cast<int>(r), count);
    for (size_t r = 0; r < n; ++r) {
      running[r]->Post([&, r](Heap* h) {
        FreeOn(h, frees[r]);
        if (alloc) AllocateOn(h, size, count, stamps[r], &got[r]);
      });
    }
    for (Worker* worker : running) worker->Wait();
    for (size_t r = 0; r < n; ++r) Hold(got[r]);
  }

  void OpBudget(Reader& in) {
    const uint8_t b = in.Byte();
    budget_ = 1 + b % 8;
    route_ = in.Byte();
    if ((b >> 3) & 3) CacheMode() = (b >> 3) & 3;
    SetBudget(budget_, false, route_);
  }

  void OpStart(int w) {
    if (workers_[w] == nullptr) workers_[w] = new Worker();
  }

  void OpFill(int w, Reader& in) {
    const size_t size = SizeFromByte(in.Byte());
    const uint8_t mode = in.Byte();
    if (workers_[w] != nullptr && !IsLargeSize(size)) Fill(w, size, (mode & 1) != 0);
  }

  void OpFlush(int w) {
    Worker* worker = workers_[w];
    if (worker == nullptr) return;
    worker->Run([](Heap* h) { h->FlushCaches(); });
    CheckCachesEmpty(*worker->heap());
  }

  // IDLE on worker w (see the op table).
  void OpIdle(int w, Reader& in) {
    const size_t size = SizeFromByte(in.Byte());
    if (workers_[w] == nullptr || IsLargeSize(size)) return;
    Fill(w, size, /*overflow=*/false);
    Heap* owner = workers_[w]->heap();
    std::vector<Worker*> others;
    for (int o = 0; o < n_; ++o) {
      if (o != w && workers_[o] != nullptr) others.push_back(workers_[o]);
    }
    if (others.empty()) return;
    SetBudget(budget_, false, static_cast<uint8_t>((route_ | 0x80) & ~0x40));
    std::vector<std::vector<Live>> frees(others.size());
    size_t turn = 0;
    for (size_t i = live_.size(); i-- > 0;) {
      mf2::Page* page = mf2::PageOf(live_[i].p);
      if (page == nullptr || !page->in_use() || page->owner_relaxed() != owner) continue;
      frees[turn++ % others.size()].push_back(live_.Take(i));
    }
    for (size_t r = 0; r < others.size(); ++r) {
      others[r]->Post([&frees, r](Heap* h) { FreeOn(h, frees[r]); });
    }
    for (Worker* o : others) o->Wait();
    const bool long_idle = live_.size() % 2 == 1;
    others[0]->Run([owner, long_idle](Heap* h) { BackgroundReclaimPass(h, owner, long_idle); });
    SetBudget(budget_, false, route_);
  }

  // ---- helpers ----

  // Whether live block `b` is of class k on a page `h` owns (workers parked).
  static bool Owned(const Live& b, Heap* h, uint32_t k) {
    mf2::Page* page = mf2::PageOf(b.p);
    return page != nullptr && page->in_use() && page->size_class() == k &&
           page->owner_relaxed() == h;
  }

  // FILL on worker w (see the op table): cap + 1 blocks allocated on the worker, cap read after
  // each allocation (a slow path may grow the cache), appended to the live list; then LiveSet's
  // FillCache frees those on the worker's own pages, newest first, on the worker itself: one
  // hand-off for the whole fill instead of one per free (the driver waits meanwhile, so the
  // live list is the worker's alone, and the owner reads its own cache). Those left live stay
  // last.
  void Fill(int w, size_t size, bool overflow) {
    Worker* worker = workers_[w];
    Heap* h = worker->heap();
    const uint32_t k = mf2::SizeToClass(size);
    const Heap::Magazine& cache = h->cache(k);
    if (live_.Full(size * (cache.cap() + 1))) return;
    const size_t first = live_.size();
    std::vector<Live> got;
    const uint64_t stamp = NextStamps(w, 0);  // the stamps of the blocks the worker allocates
    worker->Run([&](Heap* heap) {
      for (uint32_t i = 0; i < heap->cache(k).cap() + 1; ++i) {
        AllocateOn(heap, size, 1, stamp + i, &got);
      }
    });
    seq_ += got.size();
    Hold(got);
    size_t next = live_.size();
    worker->Run([&](Heap* heap) {
      FillCache(cache, overflow, [&]() {
        while (next > first) {
          if (Owned(live_[--next], h, k)) {
            const Live b = live_.Take(next);
            Verify(b);
            heap->Free(b.p);
            return true;
          }
        }
        return false;
      });
    });
  }

  // `worker` frees live block i (verifying it on its thread).
  void FreeBy(Worker* worker, size_t i) {
    const std::vector<Live> one{live_.Take(i)};
    worker->Run([&](Heap* h) { FreeOn(h, one); });
  }

  uint64_t NextStamps(int w, int count) {
    const uint64_t first = (uint64_t(w) << 56) | (seq_ + 1);
    seq_ += static_cast<uint64_t>(count);
    return first;
  }

  // The blocks a worker was handed (stamped on its thread): no overlap with a live block (3, 4).
  void Hold(const std::vector<Live>& got) {
    for (const Live& b : got) live_.AddStamped(b);
  }

  const int n_;
  uint32_t budget_ = 8;
  uint8_t route_ = 0;
  Worker* workers_[kMaxWorkers] = {};
  IterationFrame frame_;
  LiveSet live_{/*max_blocks=*/2048, /*max_bytes=*/size_t{32} << 20};
  uint64_t seq_ = 0;
};

}  // namespace
}  // namespace mf2_fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mf2_fuzz::Reader in(data, size);
  mf2_fuzz::State state(in.Byte());
  mf2_fuzz::RunSchedule(state, in, mf2_fuzz::kMaxOps, "threads_fuzz");
  return 0;
}
