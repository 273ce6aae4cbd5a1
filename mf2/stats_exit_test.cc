// The summary at exit (MF2_STATS=1, MF2_STATS_FILE), seen from outside: each test runs
// stats_exit_helper with an environment and reads what it left on stderr or in the file.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace {

struct HelperRun {
  int pid = 0;
  int status = -1;
  std::string out, err;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string TempDir() {
  const char* dir = getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

// Runs the helper in `mode` with exactly `env` as its environment.
HelperRun RunHelper(const char* mode, std::vector<std::string> env) {
  static int serial = 0;
  const std::string base = TempDir() + "/run" + std::to_string(++serial);
  HelperRun run;
  const pid_t pid = fork();
  if (pid == 0) {
    const int out = open((base + ".out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = open((base + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(out, 1);
    dup2(err, 2);
    std::vector<char*> envp;
    for (std::string& e : env) envp.push_back(&e[0]);
    envp.push_back(nullptr);
    char helper[] = "mf2/stats_exit_helper";
    char* argv[] = {helper, const_cast<char*>(mode), nullptr};
    execve(helper, argv, envp.data());
    _exit(127);
  }
  run.pid = pid;
  waitpid(pid, &run.status, 0);
  run.out = ReadFile(base + ".out");
  run.err = ReadFile(base + ".err");
  return run;
}

// The pids whose summaries `text` holds, in order (one per header line).
std::vector<int> SummaryPids(const std::string& text) {
  std::vector<int> pids;
  const std::string head = "mf2_stats: MF2 0.4.0, pid ";
  for (size_t at = text.find(head); at != std::string::npos; at = text.find(head, at + 1)) {
    pids.push_back(atoi(text.c_str() + at + head.size()));
  }
  return pids;
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(StatsAtExit, OneSummaryOnStderrNamingTheProcess) {
  const HelperRun run = RunHelper("plain", {"MF2_STATS=1"});
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(SummaryPids(run.err), std::vector<int>{run.pid}) << run.err;
  // /proc/self/comm: the name truncated to 15 characters.
  EXPECT_NE(run.err.find("pid " + std::to_string(run.pid) + " (stats_exit_help)"),
            std::string::npos)
      << run.err;
  for (const char* part : {"mf2_stats:   in use ", "mf2_stats:   committed ",
                           "mf2_stats:   reserved ", "mf2_stats:   resident ",
                           "mf2_stats:   slow_allocs ", "mf2_stats:   bytes_in_use_spans "}) {
    EXPECT_EQ(Count(run.err, part), 1u) << part << "\n" << run.err;
  }
  EXPECT_EQ(Count(run.err, "mf2_stats: route="), 1u);
}

TEST(StatsAtExit, NothingWithoutTheVariables) {
  const HelperRun run = RunHelper("plain", {"MF2_STATS=0"});
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(run.err, "");
}

TEST(StatsAtExit, FileWithPidWhenTheProgramClosedStderr) {
  const std::string pattern = TempDir() + "/closed.%p.txt";
  const HelperRun run = RunHelper("closed-stderr", {"MF2_STATS_FILE=" + pattern});
  ASSERT_EQ(run.status, 0);
  const std::string file = ReadFile(TempDir() + "/closed." + std::to_string(run.pid) + ".txt");
  EXPECT_EQ(SummaryPids(file), std::vector<int>{run.pid}) << file;
  EXPECT_EQ(Count(file, "mf2_stats: route="), 1u);
}

// A fork child that exits through exit() prints its own summary, once, with its own pid; the
// parent prints its own, once. The file (no %p) is appended to by both.
TEST(StatsAtExit, ForkChildPrintsItsOwnSummaryOnce) {
  const std::string path = TempDir() + "/fork.txt";
  const HelperRun run = RunHelper("fork", {"MF2_STATS=1", "MF2_STATS_FILE=" + path});
  ASSERT_EQ(run.status, 0) << run.err;
  const int child = atoi(run.out.c_str() + run.out.find("child ") + 6);
  ASSERT_GT(child, 0) << run.out;
  const std::string file = ReadFile(path);
  EXPECT_EQ(SummaryPids(file), (std::vector<int>{child, run.pid})) << file;
  EXPECT_EQ(Count(file, "mf2_stats: route="), 2u);
  EXPECT_EQ(Count(file, "a fork child: MF2 started in pid " + std::to_string(run.pid)), 1u) << file;
  EXPECT_EQ(run.err, "") << "the file was used, not stderr";
}

TEST(StatsAtExit, ForkChildEndingWithUnderscoreExitPrintsNothing) {
  const HelperRun run = RunHelper("fork-_exit", {"MF2_STATS=1"});
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(SummaryPids(run.err), std::vector<int>{run.pid}) << run.err;
}

TEST(StatsAtExit, ASecondRequestPrintsNothing) {
  const HelperRun run = RunHelper("twice", {"MF2_STATS=1"});
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(SummaryPids(run.err), std::vector<int>{run.pid}) << run.err;
}

TEST(StatsAtExit, AFileThatCannotBeOpenedFallsBackToStderrSayingWhy) {
  const HelperRun run = RunHelper("plain", {"MF2_STATS_FILE=/nonexistent-mf2-dir/stats.txt"});
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(run.err.rfind("mf2: MF2_STATS_FILE: cannot open /nonexistent-mf2-dir/stats.txt: "
                          "No such file or directory; statistics go to stderr\n",
                          0),
            0u)
      << run.err;
  EXPECT_EQ(SummaryPids(run.err), std::vector<int>{run.pid}) << run.err;
}

}  // namespace
