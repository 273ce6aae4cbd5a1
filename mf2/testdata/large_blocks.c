/* Large blocks (above 64 KiB, mapped directly by MF2) under MF2 as malloc, compared with glibc by
   //mf2:preload_test. stdout carries only what must be identical on both allocators; figures that
   differ (times, counts) go to stderr.

     large_blocks grow     realloc grows a block by 4 KiB steps to 32 MiB; the data survives
                           every step; stderr: seconds taken and how often the block moved
     large_blocks calloc   calloc(1 GiB) leaves the memory untouched: resident memory grows by
                           far less than 1 GiB (the kernel's zero pages are not memset)
     large_blocks oom      under RLIMIT_AS = 200 MiB: 16 MiB blocks until malloc fails (errno
                           ENOMEM), free them all, then 1 MiB blocks the same way, twice: each
                           round gets at least 95% of the one before (freed memory kept in a
                           cache is released when the address space runs out)

   Exit status 0 on success; a message on stdout names what failed. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double Now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Resident bytes, from /proc/self/statm. */
static long long ResidentBytes(void) {
  FILE* f = fopen("/proc/self/statm", "r");
  long long size = 0, resident = 0;
  if (f == NULL) return -1;
  if (fscanf(f, "%lld %lld", &size, &resident) != 2) resident = -1;
  fclose(f);
  return resident * sysconf(_SC_PAGESIZE);
}

static int Grow(void) {
  const size_t kStep = 4096, kMax = (size_t)32 << 20;
  unsigned char* p = malloc(kStep);
  size_t steps = 0, moves = 0;
  if (p == NULL) return printf("grow: malloc failed\n"), 1;
  p[0] = 1;
  const double start = Now();
  for (size_t size = 2 * kStep; size <= kMax; size += kStep) {
    unsigned char* q = realloc(p, size);
    if (q == NULL) return printf("grow: realloc to %zu failed\n", size), 1;
    if (q != p) ++moves;
    ++steps;
    p = q;
    p[size - kStep] = (unsigned char)(size / kStep); /* one byte in each new page */
  }
  const double elapsed = Now() - start;
  for (size_t off = kStep; off < kMax; off += kStep) {
    if (p[off] != (unsigned char)(off / kStep + 1)) {
      return printf("grow: byte at %zu lost\n", off), 1;
    }
  }
  if (p[0] != 1) return printf("grow: first byte lost\n"), 1;
  free(p);
  fprintf(stderr, "grow: %zu steps to 32 MiB in %.3f s, moved %zu times\n", steps, elapsed, moves);
  printf("grow: data preserved over %zu steps\n", steps);
  return 0;
}

static int Calloc(void) {
  const size_t kSize = (size_t)1 << 30;
  const long long before = ResidentBytes();
  unsigned char* p = calloc(1, kSize);
  if (p == NULL) return printf("calloc: failed\n"), 1;
  const long long after = ResidentBytes();
  fprintf(stderr, "calloc: resident %lld MiB before, %lld MiB after calloc(1 GiB)\n",
          before >> 20, after >> 20);
  if (after - before > (64ll << 20)) {
    return printf("calloc: resident memory grew by %lld MiB\n", (after - before) >> 20), 1;
  }
  if (p[0] != 0 || p[kSize / 2] != 0 || p[kSize - 1] != 0) return printf("calloc: not zero\n"), 1;
  free(p);
  printf("calloc: 1 GiB zeroed without touching it\n");
  return 0;
}

enum { kMaxBlocks = 4096 };
static void* g_blocks[kMaxBlocks];

/* Allocates blocks of `mib` MiB until malloc fails, frees them all and returns how many MiB it
   got, or -1 if malloc failed with an errno other than ENOMEM. */
static int ExhaustAndFree(size_t mib) {
  int n = 0;
  while (n < kMaxBlocks) {
    errno = 0;
    void* p = malloc(mib << 20);
    if (p == NULL) {
      if (errno != ENOMEM) {
        printf("oom: malloc(%zu MiB) failed with errno %d, not ENOMEM\n", mib, errno);
        return -1;
      }
      break;
    }
    g_blocks[n++] = p;
  }
  for (int i = 0; i < n; ++i) free(g_blocks[i]);
  return n * (int)mib;
}

/* The first round's 16 MiB blocks, once freed, must not keep the 1 MiB blocks of the next rounds
   from the address space (a cache of freed mappings that no 1 MiB request can reuse). */
static int Oom(void) {
  struct rlimit lim = {(rlim_t)200 << 20, (rlim_t)200 << 20};
  if (setrlimit(RLIMIT_AS, &lim) != 0) return printf("oom: setrlimit failed\n"), 1;
  const int first = ExhaustAndFree(16);
  const int second = ExhaustAndFree(1);
  const int third = ExhaustAndFree(1);
  if (first < 0 || second < 0 || third < 0) return 1;
  fprintf(stderr, "oom: 16 MiB blocks: %d MiB; then 1 MiB blocks: %d MiB, again %d MiB\n",
          first, second, third);
  if (first < 100) return printf("oom: the first round got %d MiB\n", first), 1;
  if (second * 100 < first * 95 || third * 100 < second * 95) {
    return printf("oom: %d MiB, then %d MiB, then %d MiB\n", first, second, third), 1;
  }
  printf("oom: every round got as much address space as the first\n");
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  if (strcmp(argv[1], "grow") == 0) return Grow();
  if (strcmp(argv[1], "calloc") == 0) return Calloc();
  if (strcmp(argv[1], "oom") == 0) return Oom();
  return 2;
}
