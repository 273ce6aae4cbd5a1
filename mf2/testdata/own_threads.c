/* How many threads the process has after it allocated in one thread ("single") or in two, the
 * second one joined ("two"): run by //mf2:preload_test with MF2 preloaded, which may add its
 * background reclaimer (mf2/reclaimer.h) in a multi-threaded process and never in a
 * single-threaded one. Prints "threads N" (entries of /proc/self/task, 100 ms after the work).
 * "fork": as "two", then a child of that process gives its heap back
 * (mf2_release_thread_heap, when the allocator has it), allocates again and counts its own
 * threads: a single-threaded child, whatever its parent had. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void* Work(void* arg) {
  void* blocks[64];
  for (int round = 0; round < 100; ++round) {
    for (int i = 0; i < 64; ++i) {
      blocks[i] = malloc(16 + (size_t)(i * 61 + round) % 2000);
      if (blocks[i] == NULL) abort();
      memset(blocks[i], 1, 16);
    }
    for (int i = 0; i < 64; ++i) free(blocks[i]);
  }
  return arg;
}

static int Threads(void) {
  DIR* d = opendir("/proc/self/task");
  if (d == NULL) return -1;
  int n = 0;
  for (struct dirent* e; (e = readdir(d)) != NULL;) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

int main(int argc, char** argv) {
  const int fork_mode = argc == 2 && strcmp(argv[1], "fork") == 0;
  if (argc != 2 || (strcmp(argv[1], "single") != 0 && strcmp(argv[1], "two") != 0 && !fork_mode)) {
    fprintf(stderr, "usage: own_threads single|two|fork\n");
    return 2;
  }
  Work(NULL);
  if (strcmp(argv[1], "single") != 0) {
    pthread_t t;
    if (pthread_create(&t, NULL, Work, NULL) != 0 || pthread_join(t, NULL) != 0) return 1;
  }
  if (fork_mode) {
    fflush(stdout);
    const pid_t child = fork();
    if (child < 0) return 1;
    if (child > 0) {
      int status = 0;
      if (waitpid(child, &status, 0) != child) return 1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    }
    void (*release)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "mf2_release_thread_heap");
    if (release != NULL) release();
    Work(NULL);
  }
  const struct timespec wait = {0, 100 * 1000 * 1000};
  nanosleep(&wait, NULL);
  printf("threads %d\n", Threads());
  return 0;
}
