// fork() while other threads allocate and free: parent and child must both be able to allocate
// afterwards (no MF2 lock inherited locked, no corrupt state). Exits 0 on success.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

int main() {
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < 3; ++t) {
    workers.emplace_back([&, t] {
      std::vector<void*> keep;
      unsigned seed = t;
      while (!stop.load(std::memory_order_relaxed)) {
        size_t n = 16 + rand_r(&seed) % 70000;  // small, mid and large sizes
        void* p = malloc(n);
        memset(p, t, n < 64 ? n : 64);
        keep.push_back(p);
        if (keep.size() > 64) {
          free(keep.front());
          keep.erase(keep.begin());
        }
      }
      for (void* p : keep) free(p);
    });
  }
  int failures = 0;
  for (int i = 0; i < 50; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      // Child: only this thread exists. Allocate across the size range and exit.
      for (int j = 0; j < 1000; ++j) {
        void* p = malloc(16 + j * 97);
        if (p == nullptr) _exit(3);
        memset(p, 1, 16);
        free(p);
      }
      char* s = strdup("child ok");
      _exit(strcmp(s, "child ok") == 0 ? 0 : 4);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failures;
  }
  stop = true;
  for (auto& w : workers) w.join();
  std::printf("fork children failed: %d\n", failures);
  return failures == 0 ? 0 : 1;
}
