/* realloc and malloc_usable_size of a freed small block (issue 10, item 9, the core's part), run
   with MF2 preloaded and MF2_ON_ERROR=report by //mf2:lifecycle_preload_test.

     freed_block_calls realloc       realloc(p, 100) after free(p)
     freed_block_calls usable_size   malloc_usable_size(p) after free(p)

   MF2 must report the misuse naming that call and the pointer, as a block that was freed (double
   free / use after free), not as a free of a pointer that is not a block start (the wording before
   the fix). Prints "freed=<pointer>" first; the test script matches the report. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  char* keep = malloc(48); /* the freed block is not the page's only one */
  char* p = malloc(48);
  if (keep == NULL || p == NULL) return 2;
  memset(p, 'p', 48);
  free(p);
  printf("freed=%p\n", (void*)p);
  fflush(stdout);
  if (strcmp(argv[1], "realloc") == 0) {
    void* q = realloc(p, 100);
    printf("realloc returned %p\n", q);
  } else if (strcmp(argv[1], "usable_size") == 0) {
    printf("malloc_usable_size returned %zu\n", malloc_usable_size(p));
  } else {
    return 2;
  }
  free(keep);
  return 0;
}
