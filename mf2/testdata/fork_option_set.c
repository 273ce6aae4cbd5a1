/* fork() while another thread changes an option (//mf2:fork_atfork_test). mf2_option_set holds
 * MF2's policy lock while it publishes a new policy; a fork at that moment must not hand the
 * child that lock held, or the child's first mf2_option_set waits forever. Each child sets an
 * option and exits; a child stuck for 10 s is killed by its alarm and reported. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mf2/mf2.h"

static atomic_int g_stop;

static void* Setter(void* arg) {
  (void)arg;
  long long v = 0;
  while (!atomic_load(&g_stop)) {
    if (mf2_option_set("pending_budget", 4 + (v++ & 7)) != 0) {
      fprintf(stderr, "mf2_option_set failed in the parent\n");
      exit(2);
    }
  }
  return NULL;
}

int main(void) {
  enum { kThreads = 2, kForks = 300 };
  pthread_t t[kThreads];
  for (int i = 0; i < kThreads; ++i) pthread_create(&t[i], NULL, Setter, NULL);
  int stuck = 0;
  for (int i = 0; i < kForks; ++i) {
    pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      return 2;
    }
    if (pid == 0) {
      alarm(10);
      int rc = mf2_option_set("pending_budget", 5);
      void* p = malloc(100);
      free(p);
      _exit(rc == 0 ? 0 : 3);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
      ++stuck;
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "child %d: status %d\n", i, status);
      return 1;
    }
    if (stuck > 0) break;
  }
  atomic_store(&g_stop, 1);
  for (int i = 0; i < kThreads; ++i) pthread_join(t[i], NULL);
  if (stuck > 0) {
    printf("a child of fork() waited 10 s in mf2_option_set: the policy lock was inherited held\n");
    return 1;
  }
  printf("%d forks while %d threads set options: every child set one and exited\n", kForks,
         kThreads);
  return 0;
}
