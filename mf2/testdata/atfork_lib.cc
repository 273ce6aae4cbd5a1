// A shared library whose fork handlers allocate, registered from its constructor. Linked into a
// program as a dependency, its constructor runs before the program's own constructors (and so
// before those of an MF2 linked statically into the program), so its handlers are registered
// first: glibc then runs its prepare handler AFTER MF2's (reverse order of registration), while
// MF2 holds its locks, and its parent and child handlers BEFORE MF2's, while they are still
// held. Each handler allocates small and large (> 64 KiB: mapped directly, under MF2's large
// table lock) blocks and frees blocks allocated by the prepare handler.
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <atomic>

namespace {

constexpr size_t kLarge = 256 * 1024;
constexpr size_t kSmall = 48;

std::atomic<int> g_prepares{0};
std::atomic<int> g_parents{0};
std::atomic<int> g_children{0};
void* g_kept_large = nullptr;  // allocated by prepare, freed by parent or child
void* g_kept_small = nullptr;

void Die(const char* what) {
  write(2, what, strlen(what));
  _exit(70);
}

// Allocates, touches and frees a few blocks of every kind.
void Churn() {
  for (int i = 0; i < 4; ++i) {
    void* big = malloc(kLarge + i * 4096);
    void* small = malloc(kSmall + i * 16);
    void* mid = malloc(20000);
    if (big == nullptr || small == nullptr || mid == nullptr) Die("atfork_lib: malloc failed\n");
    memset(big, 0x5a, 4096);
    memset(small, 0x5a, kSmall);
    free(mid);
    free(small);
    free(big);
  }
}

void Prepare() {
  g_kept_large = malloc(kLarge);
  g_kept_small = malloc(kSmall);
  if (g_kept_large == nullptr || g_kept_small == nullptr) Die("atfork_lib: prepare malloc\n");
  memset(g_kept_large, 1, kLarge);
  Churn();
  g_prepares.fetch_add(1, std::memory_order_relaxed);
}

void AfterFork(std::atomic<int>* counter) {
  Churn();
  free(g_kept_small);
  free(g_kept_large);
  g_kept_small = g_kept_large = nullptr;
  counter->fetch_add(1, std::memory_order_relaxed);
}
void Parent() { AfterFork(&g_parents); }
void Child() { AfterFork(&g_children); }

__attribute__((constructor)) void Register() {
  if (pthread_atfork(&Prepare, &Parent, &Child) != 0) Die("atfork_lib: pthread_atfork failed\n");
}

}  // namespace

// How often each handler ran in this process (relaxed: read by the thread that forked).
extern "C" __attribute__((visibility("default"))) void atfork_lib_counts(int* prepares,
                                                                          int* parents,
                                                                          int* children) {
  *prepares = g_prepares.load(std::memory_order_relaxed);
  *parents = g_parents.load(std::memory_order_relaxed);
  *children = g_children.load(std::memory_order_relaxed);
}
