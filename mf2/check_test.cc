// The default misuse handler: one line per report naming the kind, the call, the pointer and what
// was wrong; repeats capped per kind with one line saying so; the number suppressed at exit.
#include "mf2/check.h"

#include <sys/mman.h>
#include <unistd.h>

#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/policy.h"
#include "mf2/testing/scoped_policy.h"

namespace mf2 {
namespace {

// Captures what is written to fd 2 (where the default handler writes) in report mode.
class DefaultHandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    internal::ResetReportCountsForTesting();
    file_ = memfd_create("stderr", 0);
    ASSERT_GE(file_, 0);
    saved_stderr_ = dup(2);
    ASSERT_EQ(dup2(file_, 2), 2);
  }
  void TearDown() override {
    dup2(saved_stderr_, 2);
    close(saved_stderr_);
    close(file_);
    internal::ResetReportCountsForTesting();
  }
  std::vector<std::string> Lines() {
    std::string out;
    char buf[4096];
    off_t off = 0;
    for (ssize_t n; (n = pread(file_, buf, sizeof(buf), off)) > 0; off += n) out.append(buf, n);
    std::vector<std::string> lines;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }

  testing::ScopedPolicy report_{[](Policy* p) { p->on_error = OnError::kReport; }};
  int file_ = -1;
  int saved_stderr_ = -1;
};

std::string Hex(const void* p) {
  char buf[32];
  snprintf(buf, sizeof(buf), "%p", p);
  return buf;
}

TEST_F(DefaultHandlerTest, OneLineNamesKindCallPointerAndWhatWasWrong) {
  int x = 0;
  char block[64];
  internal::ReportError(ErrorKind::kDoubleFree, "free", &x, "block is not allocated");
  internal::ReportError(ErrorKind::kNotABlock, "operator delete", block + 8,
                        "points inside a live block", block, sizeof(block));
  internal::ReportError(ErrorKind::kUseAfterFree, "realloc", &x, "block was freed before");
  const std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "mf2: double free in free(" + Hex(&x) + "): block is not allocated");
  EXPECT_EQ(lines[1], "mf2: not a block start in operator delete(" + Hex(block + 8) +
                          "): points inside a live block (block " + Hex(block) + ", 64 bytes)");
  EXPECT_EQ(lines[2], "mf2: use after free in realloc(" + Hex(&x) + "): block was freed before");
}

TEST_F(DefaultHandlerTest, RepeatsAreCappedPerKindAndCountedAtExit) {
  int x = 0;
  for (int i = 0; i < 1000; ++i) {
    internal::ReportError(ErrorKind::kDoubleFree, "free", &x, "block is not allocated");
  }
  for (int i = 0; i < 3; ++i) {
    internal::ReportError(ErrorKind::kForeignPointer, "free", &x, "not from MF2");
  }
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), kReportsInFull + 1 + 3);
  for (uint32_t i = 0; i < kReportsInFull; ++i) {
    EXPECT_EQ(lines[i].rfind("mf2: double free in free(", 0), 0u) << lines[i];
  }
  EXPECT_EQ(lines[kReportsInFull],
            "mf2: further double free reports are suppressed (the first 10 were printed; their "
            "number follows at exit)");
  EXPECT_EQ(lines.back().rfind("mf2: foreign pointer in free(", 0), 0u);
  // What the static destructor prints at exit.
  internal::PrintSuppressedReports(2);
  lines = Lines();
  EXPECT_EQ(lines.back(), "mf2: 990 misuse reports were suppressed (double free: 990)");
}

TEST_F(DefaultHandlerTest, NothingSuppressedPrintsNothingAtExit) {
  int x = 0;
  for (uint32_t i = 0; i < kReportsInFull; ++i) {
    internal::ReportError(ErrorKind::kCorruptFreeList, "malloc", &x, "list leaves the page");
  }
  internal::PrintSuppressedReports(2);
  EXPECT_EQ(Lines().size(), kReportsInFull);
}

TEST(ErrorKinds, EveryKindHasItsOwnName) {
  std::set<std::string> names;
  for (int k = 0; k < kNumErrorKinds; ++k) {
    names.insert(ErrorKindName(static_cast<ErrorKind>(k)));
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(kNumErrorKinds));
  EXPECT_EQ(names.count("unknown error"), 0u);
}

TEST(DefaultHandlerDeathTest, AbortsAfterTheReportByDefault) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  int x = 0;
  EXPECT_DEATH(internal::ReportError(ErrorKind::kUseAfterFree, "malloc_usable_size", &x,
                                     "block was freed before"),
               "mf2: use after free in malloc_usable_size\\(0x[0-9a-f]+\\): block was freed "
               "before");
}

}  // namespace
}  // namespace mf2
