// A C program that uses MF2 as its malloc through pkg-config, as a user outside Bazel would:
//
//   gcc main.c $(pkg-config --cflags --libs mf2) -o main          # libmf2.so
//   gcc main.c $(pkg-config --cflags mf2) -static $(pkg-config --static --libs mf2) -o main
//
// It proves that malloc/free/realloc are MF2's: the blocks malloc returns are ones MF2 knows
// (mf2_usable_size agrees with malloc_usable_size), and MF2's own counters move with them.
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mf2/mf2.h>

static int failures = 0;

static void expect(int ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "FAIL: %s\n", what);
    failures++;
  }
}

int main(void) {
  mf2_stats before;
  mf2_get_stats(&before);

  // Enough blocks of one class to need fresh pages from MF2.
  enum { kBlocks = 4096 };
  static char* blocks[kBlocks];
  for (int i = 0; i < kBlocks; ++i) {
    blocks[i] = malloc(100);
    expect(blocks[i] != NULL, "malloc(100) returned NULL");
    memset(blocks[i], i & 0xff, 100);
  }
  // MF2 hands out its class size (>= the request); glibc's malloc would give 104 here, and
  // mf2_usable_size on a block MF2 did not allocate reports a foreign pointer and aborts.
  size_t usable = mf2_usable_size(blocks[0]);
  expect(usable >= 100, "mf2_usable_size(malloc(100)) < 100");
  expect(malloc_usable_size(blocks[0]) == usable, "malloc_usable_size is not MF2's");

  mf2_stats during;
  mf2_get_stats(&during);
  expect(during.new_pages > before.new_pages, "malloc took no page from MF2");

  char* grown = realloc(blocks[1], 5000);
  expect(grown != NULL && grown[99] == 1, "realloc lost the contents");
  blocks[1] = grown;
  for (int i = 0; i < kBlocks; ++i) free(blocks[i]);

  void* own = mf2_malloc(64);
  expect(own != NULL && mf2_usable_size(own) >= 64, "mf2_malloc");
  free(own);  // the same allocator on both sides

  printf("mf2 is malloc: usable_size(malloc(100)) = %zu, new pages %llu -> %llu, route %s\n",
         usable, (unsigned long long)before.new_pages, (unsigned long long)during.new_pages,
         mf2_get_route());
  if (failures != 0) return 1;
  printf("PASS\n");
  return 0;
}
