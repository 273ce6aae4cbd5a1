/* Deliberate misuse under MF2 as malloc: `misuse double` frees a block twice; `misuse stack`
   frees a stack address; `misuse interior` frees a pointer into a block. Each must be reported
   by MF2 (and, by default, abort). */
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  char* p = malloc(3000);
  int local = 0;
  if (strcmp(argv[1], "double") == 0) {
    free(p);
    free(p);
  } else if (strcmp(argv[1], "stack") == 0) {
    free(&local);
  } else if (strcmp(argv[1], "interior") == 0) {
    free(p + 8);
  }
  return 0;
}
