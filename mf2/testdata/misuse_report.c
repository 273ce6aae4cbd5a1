/* Misuse under MF2 as malloc, for the wording and the behaviour of reports (//mf2:preload_test):

     misuse_report large-double     frees a 1 MiB block twice
     misuse_report large-interior   frees a pointer 4 KiB into a live 1 MiB block
     misuse_report realloc-freed    realloc of a freed 1 MiB block
     misuse_report realloc-foreign  realloc of a stack address
     misuse_report many             1,000 double frees of one small block
     misuse_report options          a malloc and a free (for option warnings and MF2_VERBOSE)

   Each prints what the calls returned (realloc: NULL and errno) on stdout; MF2 prints its
   reports on stderr, and by default aborts at the first one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void PrintRealloc(void* q) {
  printf("realloc returned %s, errno %s\n", q == NULL ? "NULL" : "a block",
         errno == EINVAL ? "EINVAL" : errno == 0 ? "0" : "other");
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* mode = argv[1];
  char* large = malloc((size_t)1 << 20);
  int local = 0;
  if (large == NULL) return 3;
  if (strcmp(mode, "large-double") == 0) {
    free(large);
    free(large);
  } else if (strcmp(mode, "large-interior") == 0) {
    free(large + 4096);
  } else if (strcmp(mode, "realloc-freed") == 0) {
    free(large);
    errno = 0;
    PrintRealloc(realloc(large, (size_t)2 << 20));
  } else if (strcmp(mode, "realloc-foreign") == 0) {
    errno = 0;
    PrintRealloc(realloc(&local, 100));
  } else if (strcmp(mode, "many") == 0) {
    char* keep = malloc(48); /* keeps the page in use */
    char* p = malloc(48);
    free(p);
    for (int i = 0; i < 1000; ++i) free(p);
    free(keep);
  } else if (strcmp(mode, "options") == 0) {
    char* p = malloc(100);
    free(p);
  } else {
    return 2;
  }
  printf("%s done\n", mode);
  return 0;
}
