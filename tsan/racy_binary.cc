// The TSan canary's planted data race: two threads write the same plain int with no ordering
// between them. Built with --config=tsan this must print "WARNING: ThreadSanitizer: data race";
// tsan_canary_test runs it and checks that it does, which proves the TSan runtime is live in that
// configuration (and so that a clean MF2 run under TSan means something).
#include <chrono>
#include <cstdio>
#include <thread>

namespace {

int g_counter = 0;  // deliberately unsynchronized

__attribute__((noinline)) void Bump() { g_counter = g_counter + 1; }

}  // namespace

int main() {
  std::thread t(Bump);
  // Not at the same instant: TSan checks an access against the shadow of earlier ones, and two
  // writes that coincide can both pass before either is recorded (a planted race went
  // unreported, with counter=1, once in a fresh-clone CI run on 2 busy cores). A sleep is no
  // synchronisation to TSan: the race is still there, reported "as if synchronized via sleep".
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  Bump();  // races with the thread's Bump: no lock, no atomic, no join before it
  t.join();
  std::printf("racy_binary: counter=%d\n", g_counter);
  return 0;
}
