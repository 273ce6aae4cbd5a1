/* The public C header from C: compiled as C99 with -pedantic-errors, this file proves that
 * mf2/mf2.h is self-contained C (nothing of C++, Abseil or MF2's internals), and it calls every
 * function of the C API once through it, linked against the library. */
#define _POSIX_C_SOURCE 200809L /* pipe, read, close under -std=c99 */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mf2/mf2.h"

static int failures = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

static void test_version(void) {
  CHECK(MF2_VERSION_MAJOR == 0 && MF2_VERSION_MINOR == 4 && MF2_VERSION_PATCH == 0);
  CHECK(mf2_version() == MF2_VERSION);
}

static void test_allocation(void) {
  unsigned char* p = (unsigned char*)mf2_malloc(100);
  unsigned char* z;
  void* a;
  size_t i;
  CHECK(p != NULL && mf2_usable_size(p) >= 100);
  for (i = 0; i < 100; ++i) p[i] = (unsigned char)i;
  p = (unsigned char*)mf2_realloc(p, 10000);
  CHECK(p != NULL && p[99] == 99);
  z = (unsigned char*)mf2_calloc(10, 10);
  CHECK(z != NULL && z[0] == 0 && z[99] == 0);
  a = mf2_aligned_alloc(256, 10);
  CHECK(a != NULL && (uintptr_t)a % 256 == 0);
  errno = 0;
  CHECK(mf2_aligned_alloc(3, 10) == NULL && errno == EINVAL);
  errno = 0;
  CHECK(mf2_malloc(SIZE_MAX) == NULL && errno == ENOMEM);
  mf2_free(p);
  mf2_free(z);
  mf2_free(a);
  mf2_free(NULL);
  CHECK(mf2_usable_size(NULL) == 0);
}

static void test_heaps(void) {
  mf2_heap_t* heap = mf2_heap_new();
  void* p;
  void* q;
  void* r;
  unsigned char* z;
  CHECK(heap != NULL);
  p = mf2_heap_malloc(heap, 1000);
  z = (unsigned char*)mf2_heap_calloc(heap, 4, 25);
  q = mf2_heap_aligned_alloc(heap, 1024, 8);
  r = mf2_heap_realloc(heap, NULL, 50);
  CHECK(p != NULL && z != NULL && z[99] == 0 && q != NULL && (uintptr_t)q % 1024 == 0);
  r = mf2_heap_realloc(heap, r, 5000);
  CHECK(r != NULL && mf2_usable_size(r) >= 5000);
  mf2_heap_free(heap, z);
  mf2_heap_free(heap, q);
  mf2_heap_delete(heap);
  mf2_free(p); /* blocks outlive their deleted heap */
  mf2_free(r);
}

static void test_stats_and_options(void) {
  mf2_stats s;
  int fds[2];
  char buf[64];
  ssize_t n;
  long long value;
  memset(&s, 0xff, sizeof(s));
  mf2_stats_get(&s);
  CHECK(s.slow_allocs > 0 && s.slow_allocs != UINT64_MAX);
  CHECK(s.bytes_committed <= s.bytes_reserved);
  CHECK(pipe(fds) == 0);
  mf2_stats_print(fds[1]); /* the report is a few KiB: within the pipe's buffer */
  close(fds[1]);
  n = read(fds[0], buf, sizeof(buf) - 1);
  close(fds[0]);
  CHECK(n > 20);
  if (n > 0) {
    buf[n] = '\0';
    CHECK(strncmp(buf, "mf2_stats: MF2 0.4.0, pid ", 26) == 0);
  }
  errno = 0;
  CHECK(mf2_option_get("no_such_option", &value) == -1 && (errno == EINVAL || errno == ENOSYS));
  errno = 0;
  CHECK(mf2_option_set("no_such_option", 1) == -1 && (errno == EINVAL || errno == ENOSYS));
  CHECK(mf2_set_route("route_s") == 0 && strcmp(mf2_get_route(), "route_s") == 0);
  errno = 0;
  CHECK(mf2_set_route("nonsense") == -1 && errno == EINVAL);
  mf2_thread_idle();
  mf2_release_thread_heap();
  mf2_thread_idle();        /* without a heap: nothing to give back */
  mf2_free(mf2_malloc(10)); /* the next allocation takes a heap again */
}

int main(void) {
  test_version();
  test_allocation();
  test_heaps();
  test_stats_and_options();
  if (failures != 0) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("every C API function called from C: ok\n");
  return 0;
}
