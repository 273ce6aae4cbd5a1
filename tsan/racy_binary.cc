// The TSan canary's planted data race: two threads write the same plain int with no ordering
// between them. Built with --config=tsan this must print "WARNING: ThreadSanitizer: data race";
// tsan_canary_test runs it and checks that it does, which proves the TSan runtime is live in that
// configuration (and so that a clean MF2 run under TSan means something).
#include <cstdio>
#include <thread>

namespace {

int g_counter = 0;  // deliberately unsynchronized

__attribute__((noinline)) void Bump() { g_counter = g_counter + 1; }

}  // namespace

int main() {
  std::thread t(Bump);
  Bump();  // races with the thread's Bump: no lock, no atomic, no join before it
  t.join();
  std::printf("racy_binary: counter=%d\n", g_counter);
  return 0;
}
