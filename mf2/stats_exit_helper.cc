// A program for stats_exit_test: allocates with MF2, then ends as argv[1] says, so the test can
// see what MF2_STATS=1 / MF2_STATS_FILE print at exit.
//   plain           returns from main
//   closed-stderr   closes fd 2 first (a daemon), then exits
//   fork            forks a child that allocates and exits through exit(); waits for it
//   fork-_exit      the child ends with _exit() instead
//   twice           asks for the exit summary itself, then exits (the summary stays single)
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "mf2/mf2.h"
#include "mf2/stats_report.h"

namespace {

void Work(int n) {
  void* keep[64];
  for (int i = 0; i < 64; ++i) keep[i] = mf2_malloc(static_cast<size_t>(16 + i * n));
  for (void* p : keep) mf2_free(p);
}

int Fork(bool underscore_exit) {
  const pid_t child = fork();
  if (child < 0) return 2;
  if (child == 0) {
    Work(300);
    if (underscore_exit) _exit(0);
    exit(0);
  }
  int status = 0;
  if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return 3;
  }
  std::printf("child %d\n", static_cast<int>(child));
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 64;
  Work(100);
  const char* mode = argv[1];
  if (strcmp(mode, "plain") == 0) return 0;
  if (strcmp(mode, "closed-stderr") == 0) {
    close(2);
    exit(0);
  }
  if (strcmp(mode, "fork") == 0) return Fork(false);
  if (strcmp(mode, "fork-_exit") == 0) return Fork(true);
  if (strcmp(mode, "twice") == 0) {
    mf2::PrintStatsAtExit();
    return 0;
  }
  return 64;
}
