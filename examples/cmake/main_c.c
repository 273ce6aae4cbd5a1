// The C side of the CMake example: malloc is MF2's in a C program linked to mf2::mf2_static.
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#include <mf2/mf2.h>

int main(void) {
  void* p = malloc(100);
  size_t usable = mf2_usable_size(p);  // aborts with a report if p is not MF2's
  int ok = p != NULL && usable >= 100 && malloc_usable_size(p) == usable;
  free(p);
  printf("%s: usable_size(malloc(100)) = %zu\n", ok ? "PASS" : "FAIL", usable);
  return ok ? 0 : 1;
}
