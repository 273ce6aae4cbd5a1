/* A C program linked without the C++ runtime (//mf2:preload_test runs it with MF2 preloaded).
 *   no_cxx_runtime maps: prints whether libstdc++ is mapped into the process (MF2's shared
 *                        library needs only libc: "no", as under glibc)
 *   no_cxx_runtime new:  calls MF2's operator new (found with dlsym) with an absurd size: with no
 *                        runtime to throw std::bad_alloc with, MF2 reports it and aborts */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char** argv) {
  if (argc == 2 && strcmp(argv[1], "maps") == 0) {
    FILE* f = fopen("/proc/self/maps", "r");
    if (f == NULL) return 2;
    char line[4096];
    int cxx = 0;
    while (fgets(line, sizeof line, f) != NULL) cxx |= strstr(line, "libstdc++") != NULL;
    fclose(f);
    printf("libstdc++ mapped: %s\n", cxx ? "yes" : "no");
    return 0;
  }
  if (argc == 2 && strcmp(argv[1], "new") == 0) {
    void* (*operator_new)(unsigned long) = (void* (*)(unsigned long))dlsym(RTLD_DEFAULT, "_Znwm");
    if (operator_new == NULL) {
      printf("no operator new in the process\n");
      return 3;
    }
    void* p = operator_new(1ul << 60);
    printf("operator new returned %p\n", p);
    return 0;
  }
  fprintf(stderr, "usage: no_cxx_runtime maps|new\n");
  return 2;
}
