// Allocation after MF2 has released the exiting thread's heap: a pthread key created after
// MF2's (MF2 creates its key on the first allocation, which happens before main) has its
// destructor run after MF2's, and that destructor allocates, frees, and frees blocks allocated
// earlier by other threads. Also a C++ thread_local whose destructor allocates (those run before
// the key destructors). Prints a checksum that must match the glibc run.
#include <pthread.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

pthread_key_t g_late_key;
std::atomic<unsigned long> g_sum{0};

void LateDestructor(void* arg) {
  // Runs after MF2's own key destructor on this thread.
  char* inherited = static_cast<char*>(arg);
  std::string s(inherited);
  free(inherited);
  std::vector<int> v(1000, 7);
  char* p = static_cast<char*>(malloc(5000));
  memset(p, 1, 5000);
  g_sum += s.size() + static_cast<unsigned long>(v[999]) + static_cast<unsigned char>(p[4999]);
  free(p);
}

struct LocalWithDestructor {
  ~LocalWithDestructor() {
    std::string t(300, 'x');
    g_sum += t.size();
  }
};
thread_local LocalWithDestructor t_local;

}  // namespace

int main() {
  free(malloc(1));  // MF2's key exists before ours
  pthread_key_create(&g_late_key, &LateDestructor);
  for (int round = 0; round < 20; ++round) {
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
      char* handed = strdup("block allocated by the main thread");
      threads.emplace_back([handed] {
        (void)&t_local;
        pthread_setspecific(g_late_key, handed);
        std::vector<std::string> work(100, std::string(64, 'w'));
        g_sum += work.size();
      });
    }
    for (auto& t : threads) t.join();
  }
  std::printf("tls teardown sum %lu\n", g_sum.load());
  return 0;
}
