// fork() with fork handlers that allocate, registered both before MF2's (by the atfork_lib
// shared library's constructor) and after it (by main), while other threads allocate and free
// small, mid and large blocks. Every fork must complete in parent and child, every handler must
// run, and the child must be able to allocate. A deadlock shows as a hang (the test runs this
// under `timeout`). Exits 0 on success. Built twice: with MF2 linked in statically
// (//mf2:malloc) and plain (run with MF2 preloaded).
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

extern "C" void atfork_lib_counts(int* prepares, int* parents, int* children);

namespace {

constexpr int kForks = 60;
std::atomic<int> g_main_prepares{0};
void* g_main_kept = nullptr;

// Registered after MF2's handlers: glibc runs this prepare handler before MF2's.
void MainPrepare() {
  g_main_kept = malloc(100000);
  g_main_prepares.fetch_add(1, std::memory_order_relaxed);
}
void MainAfter() {
  free(g_main_kept);
  g_main_kept = malloc(70000);
  free(g_main_kept);
  g_main_kept = nullptr;
}

int Child(int round) {
  int prepares, parents, children;
  atfork_lib_counts(&prepares, &parents, &children);
  // Counts inherited from the parent, plus this child's own child handler.
  if (prepares != round + 1 || parents != round || children != 1) return 3;
  for (int j = 0; j < 200; ++j) {
    void* p = malloc(16 + j * 997);
    if (p == nullptr) return 4;
    memset(p, 1, 16);
    free(p);
  }
  void* big = malloc(1 << 20);
  if (big == nullptr) return 5;
  memset(big, 2, 1 << 20);
  free(big);
  return 0;
}

}  // namespace

int main() {
  if (pthread_atfork(&MainPrepare, &MainAfter, &MainAfter) != 0) return 2;
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < 3; ++t) {
    workers.emplace_back([&stop, t] {
      std::vector<void*> keep;
      unsigned seed = t + 1;
      while (!stop.load(std::memory_order_relaxed)) {
        const unsigned r = rand_r(&seed);
        const size_t n = r % 8 == 0 ? 65536 + r % 300000 : 16 + r % 20000;
        void* p = malloc(n);
        if (p == nullptr) abort();
        memset(p, t, n < 64 ? n : 64);
        keep.push_back(p);
        if (keep.size() > 32) {
          free(keep.front());
          keep.erase(keep.begin());
        }
      }
      for (void* p : keep) free(p);
    });
  }
  int failures = 0;
  for (int i = 0; i < kForks; ++i) {
    const pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      return 1;
    }
    if (pid == 0) _exit(Child(i));
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "fork %d: child failed (status %d)\n", i, status);
      ++failures;
    }
  }
  stop.store(true, std::memory_order_relaxed);
  for (auto& w : workers) w.join();
  int prepares, parents, children;
  atfork_lib_counts(&prepares, &parents, &children);
  if (prepares != kForks || parents != kForks || children != 0 ||
      g_main_prepares.load() != kForks) {
    fprintf(stderr, "handler counts: lib prepare %d parent %d child %d, main prepare %d\n",
            prepares, parents, children, g_main_prepares.load());
    ++failures;
  }
  printf("%d forks with allocating fork handlers: %d failures\n", kForks, failures);
  return failures == 0 ? 0 : 1;
}
