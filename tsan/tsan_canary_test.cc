// Proves ThreadSanitizer is live in the --config=tsan build: runs racy_binary (a planted data
// race) as a child process and asserts that TSan reported it. In any other configuration there is
// no TSan to prove, and the test says so instead of pretending.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <sys/wait.h>

#include "gtest/gtest.h"

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MF2_CANARY_TSAN 1
#endif
#endif
#if !defined(MF2_CANARY_TSAN) && defined(__SANITIZE_THREAD__)
#define MF2_CANARY_TSAN 1
#endif

namespace {

// The child's path in the runfiles tree (the test runs from the workspace's runfiles root).
[[maybe_unused]] std::string RacyBinaryPath() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  if (srcdir != nullptr && workspace != nullptr) {
    return std::string(srcdir) + "/" + workspace + "/tsan/racy_binary";
  }
  return "tsan/racy_binary";
}

// Runs `command` with stderr folded into stdout; returns the output and sets *status.
[[maybe_unused]] std::string RunAndCapture(const std::string& command, int* status) {
  std::string out;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) {
    *status = -1;
    return out;
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  *status = pclose(pipe);
  return out;
}

TEST(TsanCanaryTest, PlantedRaceIsReported) {
#if defined(MF2_CANARY_TSAN)
  int status = 0;
  const std::string out = RunAndCapture(RacyBinaryPath(), &status);
  EXPECT_NE(out.find("WARNING: ThreadSanitizer: data race"), std::string::npos)
      << "TSan did not report the planted race; the child printed:\n"
      << out;
  EXPECT_NE(status, 0) << "TSan exits with an error status after a report";
  std::printf("tsan canary: the planted race was reported (exit status %d)\n", status);
#else
  std::printf(
      "tsan canary: this configuration is not TSan; the --config=tsan run of this test checks "
      "the planted race\n");
#endif
}

}  // namespace
