// A C program with @mf2//mf2:malloc linked in: malloc is MF2's. mf2_usable_size accepts the
// blocks malloc returns (on a block MF2 did not hand out it reports a foreign pointer and
// aborts) and malloc_usable_size gives MF2's answer (112 for malloc(100), glibc's is 104).
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#include "mf2/mf2.h"

int main(void) {
  void* blocks[2000];
  for (int i = 0; i < 2000; ++i) blocks[i] = malloc(100);
  size_t usable = mf2_usable_size(blocks[0]);
  int ok = usable >= 100 && malloc_usable_size(blocks[0]) == usable;
  for (int i = 0; i < 2000; ++i) mf2_free(blocks[i]);
  printf("%s: usable_size(malloc(100)) = %zu\n", ok ? "PASS" : "FAIL", usable);
  return ok ? 0 : 1;
}
