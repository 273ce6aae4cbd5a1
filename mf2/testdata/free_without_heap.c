/* A valid free() under memory pressure by a thread that never allocated (issue 10, item 5), run
   with MF2 preloaded by //mf2:lifecycle_preload_test.

   The main thread allocates blocks of several kinds (small, mid, page-sized and a large mapping);
   a thread that has never allocated waits; the address-space limit is lowered to what is mapped
   now, so no new mapping fits; then the waiting thread frees every block. Freeing must never need
   new memory: no report, no abort, exit 0. Before the fix the freeing thread had to take a heap
   of its own first: with no idle heap to take over it had to map one, failed, and reported the
   genuine pointer as foreign. An allocation by that thread under the limit must fail cleanly
   (NULL with errno ENOMEM) or succeed, never crash.

     free_without_heap               only the main thread ever allocated (no idle heap exists)
     free_without_heap exited-owner  also blocks of a thread that exited before the frees (its
                                     heap is abandoned: the frees drain it without a heap) */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define kMainBlocks 240
#define kWorkerBlocks 100

static void* g_main_blocks[kMainBlocks];
static void* g_worker_blocks[kWorkerBlocks];
static int g_go[2];        /* pipe: main -> freeing thread */
static int g_alloc_result; /* 0 NULL+ENOMEM, 1 non-NULL, -1 NULL with another errno */

/* Writes without stdio: under the limit stdio's first use could need a buffer. */
static void Say(const char* s) {
  ssize_t unused = write(1, s, strlen(s));
  (void)unused;
}

static size_t SizeOf(int i) {
  static const size_t kSizes[] = {48, 48, 48, 16, 100, 3000, 40 * 1024, 48};
  if (i == 7) return 1 << 20; /* one large mapping */
  return kSizes[i % 8];
}

static void* Worker(void* arg) {
  (void)arg;
  for (int i = 0; i < kWorkerBlocks; ++i) {
    g_worker_blocks[i] = malloc(SizeOf(i));
    if (g_worker_blocks[i] == NULL) abort();
    memset(g_worker_blocks[i], 'w', SizeOf(i));
  }
  return NULL; /* exits: its heap is abandoned with these blocks live */
}

static void* Freer(void* arg) {
  (void)arg;
  char c;
  if (read(g_go[0], &c, 1) != 1) abort();
  for (int i = 0; i < kMainBlocks; ++i) free(g_main_blocks[i]);
  for (int i = 0; i < kWorkerBlocks; ++i) free(g_worker_blocks[i]); /* NULL unless exited-owner */
  Say("freer: every block freed under the limit\n");
  errno = 0;
  void* p = malloc(64);
  g_alloc_result = p != NULL ? 1 : errno == ENOMEM ? 0 : -1;
  free(p);
  return NULL;
}

int main(int argc, char** argv) {
  const int exited_owner = argc > 1 && strcmp(argv[1], "exited-owner") == 0;
  for (int i = 0; i < kMainBlocks; ++i) {
    g_main_blocks[i] = malloc(SizeOf(i));
    if (g_main_blocks[i] == NULL) return 2;
    memset(g_main_blocks[i], 'm', SizeOf(i));
  }
  pthread_t worker, freer;
  if (pipe(g_go) != 0) return 2;
  if (exited_owner) {
    if (pthread_create(&worker, NULL, &Worker, NULL) != 0) return 2;
    pthread_join(worker, NULL);
  }
  if (pthread_create(&freer, NULL, &Freer, NULL) != 0) return 2;

  /* No new mapping fits from here on: the limit is what is mapped now. */
  long vm_pages = 0;
  FILE* f = fopen("/proc/self/statm", "r");
  if (f == NULL || fscanf(f, "%ld", &vm_pages) != 1) return 2;
  fclose(f);
  struct rlimit saved, tight;
  if (getrlimit(RLIMIT_AS, &saved) != 0) return 2;
  tight = saved;
  tight.rlim_cur = (rlim_t)vm_pages * (rlim_t)sysconf(_SC_PAGESIZE);
  if (setrlimit(RLIMIT_AS, &tight) != 0) return 2;
  void* probe = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (probe != MAP_FAILED) {
    Say("setup: a mapping still fits under the limit\n");
    return 2;
  }
  if (write(g_go[1], "g", 1) != 1) return 2;
  pthread_join(freer, NULL);
  if (setrlimit(RLIMIT_AS, &saved) != 0) return 2;

  if (g_alloc_result < 0) {
    Say("FAIL: malloc under the limit returned NULL without ENOMEM\n");
    return 1;
  }
  /* The memory freed is reusable. */
  for (int i = 0; i < kMainBlocks; ++i) {
    void* p = malloc(SizeOf(i));
    if (p == NULL) return 1;
    memset(p, 'n', SizeOf(i));
    free(p);
  }
  printf("free_without_heap%s: ok (allocation under the limit: %s)\n",
         exited_owner ? " exited-owner" : "", g_alloc_result ? "served" : "NULL, ENOMEM");
  return 0;
}
