// A C program with @mf2//mf2:malloc linked in: malloc is MF2's (mf2_usable_size on a block MF2
// did not hand out would report a foreign pointer and abort).
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#include "mf2/mf2.h"

int main(void) {
  mf2_stats before, after;
  mf2_get_stats(&before);
  void* blocks[2000];
  for (int i = 0; i < 2000; ++i) blocks[i] = malloc(100);
  size_t usable = mf2_usable_size(blocks[0]);
  int ok = usable >= 100 && malloc_usable_size(blocks[0]) == usable;
  mf2_get_stats(&after);
  ok = ok && after.new_pages > before.new_pages;
  for (int i = 0; i < 2000; ++i) free(blocks[i]);
  printf("%s: usable_size(malloc(100)) = %zu, new pages %llu -> %llu\n", ok ? "PASS" : "FAIL",
         usable, (unsigned long long)before.new_pages, (unsigned long long)after.new_pages);
  return ok ? 0 : 1;
}
