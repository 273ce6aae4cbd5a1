// A C program that uses MF2 as its malloc through pkg-config, as a user outside Bazel would:
//
//   gcc main.c $(pkg-config --cflags --libs mf2) -o main          # libmf2.so
//   gcc main.c $(pkg-config --cflags mf2) -static $(pkg-config --static --libs mf2) -o main
//
// It proves that malloc, realloc and free are MF2's: mf2_usable_size accepts the blocks malloc
// returns (on a block MF2 did not hand out it reports a foreign pointer and aborts), and
// malloc_usable_size is MF2's answer too (glibc's malloc(100) has 104 usable bytes, MF2's 112:
// its size class). Blocks cross between the two APIs both ways.
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
  enum { kBlocks = 4096 };
  static char* blocks[kBlocks];
  for (int i = 0; i < kBlocks; ++i) {
    blocks[i] = malloc(100);
    expect(blocks[i] != NULL, "malloc(100) returned NULL");
    memset(blocks[i], i & 0xff, 100);
  }
  size_t usable = mf2_usable_size(blocks[0]);
  expect(usable >= 100, "mf2_usable_size(malloc(100)) < 100");
  expect(malloc_usable_size(blocks[0]) == usable, "malloc_usable_size is not MF2's");

  char* grown = realloc(blocks[1], 5000);
  expect(grown != NULL && grown[99] == 1, "realloc lost the contents");
  expect(mf2_usable_size(grown) >= 5000, "realloc's block is not MF2's");
  blocks[1] = grown;
  for (int i = 0; i < kBlocks; i += 2) mf2_free(blocks[i]);  // malloc's blocks, MF2's free
  for (int i = 1; i < kBlocks; i += 2) free(blocks[i]);

  void* own = mf2_malloc(64);
  expect(own != NULL && malloc_usable_size(own) == mf2_usable_size(own), "mf2_malloc");
  free(own);  // MF2's block, malloc's free: the same allocator

  printf("mf2 is malloc: usable_size(malloc(100)) = %zu, route %s\n", usable, mf2_get_route());
  if (failures != 0) return 1;
  printf("PASS\n");
  return 0;
}
