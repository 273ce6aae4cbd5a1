// Frees and allocations after MF2's thread-exit hook (issue 10, item 1), run with MF2 preloaded
// by //mf2:lifecycle_preload_test.
//
// glibc frees per-thread buffers after every pthread key destructor has run
// (__libc_thread_freeres): the strerror() text of an unknown code, the strsignal() text, the
// dlerror() message of a failed dlopen. A key destructor may also allocate in the last round of
// destructors, when no later round can run MF2's own destructor again. None of this may leave a
// heap claimed by a thread that is gone: each such heap keeps its pages forever, so resident
// memory grows with the number of threads (this program in mode after-hook: 241 MB and 528
// segments before the fix; glibc 3 MB).
//
//   thread_exit_frees MODE [threads] [batch]
// Starts `threads` threads (default 20000), `batch` at a time (default 50): a third call
// strerror() and strsignal() of unknown codes, a third dlerror() after a failed dlopen, a third
// set a key whose destructor allocates in the last round (and frees a block; another block is
// freed later by the main thread, into the heap of a thread that is gone). MODE after-hook: those
// threads allocated before, so MF2's exit hook has run when their destructor allocates;
// first-in-last-round: they allocate for the first time in the last round. Prints the resident
// set at the end and its maximum (KiB) and a checksum; the caller bounds them
// (lifecycle_preload_test.sh).
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

pthread_key_t g_key;
bool g_first_in_last_round = false;
std::atomic<unsigned long> g_sum{0};
// Blocks allocated by key destructors in the last round, freed later by the main thread (a free
// into the heap of a thread that has exited).
std::vector<std::atomic<void*>>* g_handed = nullptr;

struct Job {
  int index;
};

// Runs in every round of key destructors while the thread keeps setting a value: the value is the
// thread's index << 8 | the round number (from 1). In the last round
// (PTHREAD_DESTRUCTOR_ITERATIONS) it allocates: no later round can run MF2's destructor.
void KeyDestructor(void* arg) {
  const uintptr_t value = reinterpret_cast<uintptr_t>(arg);
  if ((value & 0xff) < PTHREAD_DESTRUCTOR_ITERATIONS) {
    pthread_setspecific(g_key, reinterpret_cast<void*>(value + 1));
    return;
  }
  char* kept = static_cast<char*>(malloc(200));
  char* temp = static_cast<char*>(malloc(3000));
  if (kept == nullptr || temp == nullptr) abort();
  memset(kept, 'k', 200);
  memset(temp, 't', 3000);
  g_sum += static_cast<unsigned char>(kept[199]) + static_cast<unsigned char>(temp[2999]);
  free(temp);  // freed by the exiting thread itself
  const int index = static_cast<int>(value >> 8);
  (*g_handed)[static_cast<size_t>(index)].store(kept, std::memory_order_release);
}

void* Run(void* arg) {
  const int i = static_cast<Job*>(arg)->index;
  switch (i % 3) {
    case 0: {
      // Unknown codes: glibc formats them into a per-thread malloc'd buffer freed at exit.
      const char* e = strerror(100000 + i);
      const char* s = strsignal(1000 + i % 1000);
      g_sum += strlen(e) + strlen(s);
      break;
    }
    case 1: {
      // A failed dlopen leaves a malloc'd message, freed at thread exit.
      void* h = dlopen("/nonexistent/mf2-thread-exit-frees.so", RTLD_NOW);
      if (h != nullptr) abort();
      const char* msg = dlerror();
      g_sum += msg != nullptr ? strlen(msg) : 0;
      break;
    }
    default: {
      // In mode first-in-last-round these threads allocate for the first time in the last round
      // of key destructors (MF2's exit hook never runs for them: its key has no value).
      if (!g_first_in_last_round) {
        char* block = static_cast<char*>(malloc(100));
        memset(block, 'b', 100);
        g_sum += static_cast<unsigned char>(block[99]);
        free(block);
      }
      // Rounds are counted in the low byte, the thread's index above it.
      pthread_setspecific(g_key, reinterpret_cast<void*>((static_cast<uintptr_t>(i) << 8) | 1));
      break;
    }
  }
  return nullptr;
}

long ResidentKb() {
  FILE* f = fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  long size = 0, resident = 0;
  if (fscanf(f, "%ld %ld", &size, &resident) != 2) resident = -1;
  fclose(f);
  return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  if (strcmp(argv[1], "first-in-last-round") == 0) {
    g_first_in_last_round = true;
  } else if (strcmp(argv[1], "after-hook") != 0) {
    return 2;
  }
  const int threads = argc > 2 ? atoi(argv[2]) : 20000;
  const int batch = argc > 3 ? atoi(argv[3]) : 50;
  if (threads <= 0 || batch <= 0) return 2;
  free(malloc(1));  // MF2's key exists before ours: ours runs after it in every round
  if (pthread_key_create(&g_key, &KeyDestructor) != 0) return 2;
  g_handed = new std::vector<std::atomic<void*>>(static_cast<size_t>(threads));
  std::vector<pthread_t> ids(static_cast<size_t>(batch));
  std::vector<Job> jobs(static_cast<size_t>(batch));
  int handed = 0;
  for (int first = 0; first < threads; first += batch) {
    const int n = threads - first < batch ? threads - first : batch;
    for (int j = 0; j < n; ++j) {
      jobs[static_cast<size_t>(j)].index = first + j;
      if (pthread_create(&ids[static_cast<size_t>(j)], nullptr, &Run,
                         &jobs[static_cast<size_t>(j)]) != 0) {
        fprintf(stderr, "pthread_create failed at thread %d\n", first + j);
        return 1;
      }
    }
    for (int j = 0; j < n; ++j) pthread_join(ids[static_cast<size_t>(j)], nullptr);
    // The blocks the exited threads allocated in their last destructor round.
    for (int j = first; j < first + n; ++j) {
      void* p = (*g_handed)[static_cast<size_t>(j)].exchange(nullptr, std::memory_order_acquire);
      if (p == nullptr) continue;
      if (static_cast<char*>(p)[0] != 'k') {
        fprintf(stderr, "block handed over by thread %d was overwritten\n", j);
        return 1;
      }
      free(p);
      ++handed;
    }
  }
  if (handed != threads / 3) {  // threads i with i % 3 == 2
    fprintf(stderr, "%d key destructors allocated in their last round, expected %d\n", handed,
            threads / 3);
    return 1;
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("%s: threads=%d handed=%d rss_kb=%ld maxrss_kb=%ld sum=%lu\n", argv[1], threads, handed,
         ResidentKb(), ru.ru_maxrss, g_sum.load());
  delete g_handed;
  return 0;
}
