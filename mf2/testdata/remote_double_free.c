/* Double frees by a thread that does not own the block (issue 10, item 8), run with MF2 preloaded
   by //mf2:lifecycle_preload_test.

     remote_double_free twice         thread B (which never allocated) frees the main thread's
                                      block twice in a row
     remote_double_free twice-heap    the same, B having a heap of its own
     remote_double_free owner-remote  the main thread frees its block, then B frees it again
     remote_double_free remote-owner  B frees the main thread's block, then (after B is joined)
                                      the main thread frees it again: the abort is in the main
                                      thread, at its free
     remote_double_free race ROUNDS   report mode: each round the main thread (the owner) and B
                                      free the same block at the same moment; the main thread
                                      keeps the blocks malloc hands out live in a window and
                                      checks that no block is handed out while it is still live

   In the first four modes the thread that frees a second time prints a marker naming the pointer
   right before that free and another one right after it; a SIGABRT handler says which thread
   aborted. With MF2_ON_ERROR=abort the process must abort in that thread at the second free
   (glibc catches these cases at the second free too). Before the fix a second free by a thread
   that does not own the block was absorbed: the process exited 0, or the main thread's malloc
   reported it later; and an owner's free after a remote one was accepted, which put the block on
   two free lists. In race mode that ended in a block handed out while still live (a free-list
   cycle after enough rounds). */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define kSize 48
#define kWindow 256
#define kRaceSize 1024 /* 64 blocks a page: the window spans pages, so queues are drained */

static void* g_block;
static pthread_t g_b;
static int g_b_allocates;

static void Say(const char* s) {
  ssize_t unused = write(2, s, strlen(s));
  (void)unused;
}

static void OnAbort(int sig) {
  (void)sig;
  Say(pthread_equal(pthread_self(), g_b) ? "SIGABRT in thread B\n"
                                         : "SIGABRT in the main thread\n");
  /* Returning lets abort() restore the default action and raise again. */
}

static void* FreeTwice(void* arg) {
  (void)arg;
  if (g_b_allocates) free(malloc(kSize));
  char line[128];
  if (g_block == NULL) return NULL;
  snprintf(line, sizeof(line), "B: first free of %p\n", g_block);
  Say(line);
  free(g_block);
  snprintf(line, sizeof(line), "B: second free of %p\n", g_block);
  Say(line);
  free(g_block);
  Say("B: after the second free\n");
  return NULL;
}

static void* FreeOnce(void* arg) {
  (void)arg;
  char line[128];
  snprintf(line, sizeof(line), "B: first free of %p\n", g_block);
  Say(line);
  free(g_block);
  return NULL;
}

static void* FreeAgain(void* arg) {
  (void)arg;
  char line[128];
  snprintf(line, sizeof(line), "B: second free of %p\n", g_block);
  Say(line);
  free(g_block);
  Say("B: after the second free\n");
  return NULL;
}

/* ---- race mode ---- */
/* Each round: the main thread publishes its block, B says it is ready and spins, the main thread
   says go, and both free the block after a short delay of their own that varies from round to
   round (so either order and true overlap all occur). */
static void* _Atomic g_race_block;
static atomic_int g_race_ready; /* round B is spinning for */
static atomic_int g_race_go;    /* round both may free in */
static atomic_int g_race_done;  /* rounds B has finished */
static atomic_int g_race_stop;

static void Jitter(unsigned n) {
  for (volatile unsigned i = 0; i < n; ++i) {
  }
}

/* Waits until *v == want (or stop is set): spins briefly, then yields the CPU. */
static int WaitFor(atomic_int* v, int want) {
  for (unsigned spins = 0; atomic_load(v) != want; ++spins) {
    if (atomic_load(&g_race_stop)) return 0;
    if (spins > 100000) sched_yield();
  }
  return 1;
}

static void* RaceB(void* arg) {
  (void)arg;
  void* mine = malloc(kSize); /* B has a heap of its own */
  unsigned seed = 12345;
  for (int round = 1;; ++round) {
    atomic_store(&g_race_ready, round);
    if (!WaitFor(&g_race_go, round)) break;
    seed = seed * 1103515245u + 12345u;
    Jitter((seed >> 16) % 64);
    free(atomic_load(&g_race_block));
    atomic_store(&g_race_done, round);
  }
  free(mine);
  return NULL;
}

static int Race(int rounds) {
  static void* window[kWindow];
  int next = 0;
  unsigned seed = 777;
  pthread_t b;
  if (pthread_create(&b, NULL, &RaceB, NULL) != 0) return 2;
  g_b = b;
  for (int r = 1; r <= rounds; ++r) {
    void* p = malloc(kRaceSize);
    if (p == NULL) return 2;
    memset(p, 0x5a, kRaceSize);
    atomic_store(&g_race_block, p);
    WaitFor(&g_race_ready, r);
    atomic_store(&g_race_go, r);
    /* Odd rounds give B a head start of up to a few microseconds, longer than it takes B to see
       `go`, so B's free comes first in some rounds, the owner's in others, and some overlap. */
    seed = seed * 1103515245u + 12345u;
    if (r % 2 == 1) Jitter((seed >> 16) % 4096);
    free(p); /* the owner's free, racing B's */
    WaitFor(&g_race_done, r);
    for (int k = 0; k < 3; ++k) {
      void* q = malloc(kRaceSize);
      if (q == NULL) return 2;
      for (int i = 0; i < kWindow; ++i) {
        if (window[i] == q) {
          printf("FAIL: round %d: malloc handed out %p, which is still live\n", r, q);
          fflush(stdout);
          _exit(1);
        }
      }
      if (window[next] != NULL) free(window[next]);
      window[next] = q;
      next = (next + 1) % kWindow;
    }
  }
  atomic_store(&g_race_stop, 1);
  pthread_join(b, NULL);
  for (int i = 0; i < kWindow; ++i) free(window[i]);
  printf("race: %d rounds, no block handed out while live\n", rounds);
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  signal(SIGABRT, &OnAbort);
  if (strcmp(argv[1], "race") == 0) return Race(argc > 2 ? atoi(argv[2]) : 20000);
  g_block = malloc(kSize);
  memset(g_block, 0x5a, kSize);
  void* (*body)(void*) = &FreeTwice;
  if (strcmp(argv[1], "twice-heap") == 0) {
    g_b_allocates = 1;
  } else if (strcmp(argv[1], "owner-remote") == 0) {
    free(g_block);
    Say("main: freed its block\n");
    body = &FreeAgain;
  } else if (strcmp(argv[1], "remote-owner") == 0) {
    body = &FreeOnce;
  } else if (strcmp(argv[1], "twice") != 0) {
    return 2;
  }
  if (pthread_create(&g_b, NULL, body, NULL) != 0) return 2;
  pthread_join(g_b, NULL);
  Say("main: B joined\n");
  if (body == &FreeOnce) {
    char line[128];
    snprintf(line, sizeof(line), "main: second free of %p\n", g_block);
    Say(line);
    free(g_block);
    Say("main: after the second free\n");
  }
  /* Allocations that would drain whatever B left on the block's page. */
  for (int i = 0; i < 2000; ++i) free(malloc(kSize));
  Say("main: done\n");
  return 0;
}
