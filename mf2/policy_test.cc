// Options: the strict environment parser (every bad value is named in one warning line and the
// default is kept), booleans and suffixes, overflow, the run-time get/set API and its safety
// against concurrent readers, MF2_VERBOSE's listing, and README.md's table against the option
// table.
#include "mf2/policy.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/testing/scoped_policy.h"

namespace mf2 {
namespace {

// Every MF2_* option unset for the test, and the policy in force restored afterwards.
class OptionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (size_t i = 0; i < OptionCount(); ++i) unsetenv(OptionAt(i).name);
  }
  void TearDown() override {
    for (size_t i = 0; i < OptionCount(); ++i) unsetenv(OptionAt(i).name);
  }

  // The lines `writer(fd)` writes to a pipe (less than the pipe holds: nobody reads meanwhile).
  template <typename Write>
  static std::vector<std::string> LinesWritten(Write writer) {
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    writer(fds[1]);
    close(fds[1]);
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = read(fds[0], buf, sizeof(buf))) > 0;) out.append(buf, n);
    close(fds[0]);
    std::istringstream lines(out);
    std::vector<std::string> result;
    for (std::string line; std::getline(lines, line);) result.push_back(line);
    return result;
  }

  // The policy parsed from the environment, and every warning line it wrote.
  static Policy Parse(std::vector<std::string>* warnings) {
    Policy p;
    *warnings = LinesWritten([&p](int fd) { p = PolicyFromEnvironment(fd); });
    return p;
  }

  static uint64_t Field(const Policy& p, const char* name) {
    const OptionInfo* o = FindOption(name);
    EXPECT_NE(o, nullptr) << name;
    return o == nullptr ? 0 : o->load(p);
  }

  // Changes nothing: restores the policy (and route) in force before the test, which the test
  // changes through OptionSet and SetRoute, when the fixture is destroyed (after TearDown).
  testing::ScopedPolicy saved_{[](Policy*) {}};
};

// The values the issue found silently ignored or reinterpreted, and more of the same kinds.
TEST_F(OptionsTest, EveryBadValueIsNamedInOneWarningAndTheDefaultIsKept) {
  struct Bad {
    const char* name;
    const char* value;
    const char* default_text;
  };
  const Bad cases[] = {
      {"MF2_ROUTE", "foo", "route_s"},
      {"MF2_ON_ERROR", "continue", "abort"},
      {"MF2_RECLAIM_IDLE", "maybe", "1"},
      {"MF2_STATS", "2", "0"},
      {"MF2_PAGE_CACHE_MB", "-1", "32 MiB"},  // was unlimited (strtoull wraps)
      {"MF2_PAGE_CACHE_MB", "99999999999999999999", "32 MiB"},
      {"MF2_PAGE_CACHE_MB", "32X", "32 MiB"},
      {"MF2_PAGE_CACHE_MB", " 32", "32 MiB"},
      {"MF2_PAGE_CACHE_MB", "0x20", "32 MiB"},
      {"MF2_LARGE_CACHE_MB", "17592186044416", "64 MiB"},  // 2^44 MiB: overflows when scaled
      {"MF2_HEAP_EMPTY_KB", "1T", "2048 KiB"},
      {"MF2_IDLE_US", "18446744073709552", "150 us"},  // wrapped to 384 ns once scaled
      {"MF2_RFR_US", "3600000001", "200 us"},          // above an hour
      {"MF2_RECLAIM_AFTER_US", "10min", "10000 us"},
      {"MF2_RECLAIM_BATCH", "0", "32"},
      {"MF2_PENDING_BUDGET", "0", "8"},
      {"MF2_ADOPT_PRESSURE", "4294967296", "4"},  // does not fit the field
      {"MF2_ADOPT_MIN_REMOTE", "8.5", "8"},
      {"MF2_RETAINED_SEGMENTS", "two", "2"},
      {"MF2_ADOPT_PARTIAL_GATE", "", ""},  // empty: not set, no warning
  };
  const Policy defaults;
  for (const Bad& c : cases) {
    SCOPED_TRACE(std::string(c.name) + "=" + c.value);
    setenv(c.name, c.value, 1);
    std::vector<std::string> warnings;
    const Policy p = Parse(&warnings);
    unsetenv(c.name);
    EXPECT_EQ(Field(p, c.name), Field(defaults, c.name)) << "the default is kept";
    if (c.value[0] == '\0') {
      EXPECT_TRUE(warnings.empty());
      continue;
    }
    ASSERT_EQ(warnings.size(), 1u) << "one warning line";
    const std::string& w = warnings[0];
    EXPECT_EQ(w.rfind("mf2: warning: ", 0), 0u) << w;
    EXPECT_NE(w.find(std::string(c.name) + "=" + c.value + " ignored ("), std::string::npos) << w;
    EXPECT_NE(w.find(std::string("; using the default ") + c.default_text),
              std::string::npos)
        << w;
  }
}

TEST_F(OptionsTest, WarningsSayWhatWasExpected) {
  setenv("MF2_RECLAIM_BATCH", "0", 1);
  setenv("MF2_PAGE_CACHE_MB", "99999999999999999999", 1);
  setenv("MF2_ROUTE", "foo", 1);
  setenv("MF2_RECLAIM_IDLE", "nah", 1);
  std::vector<std::string> w;
  Parse(&w);
  ASSERT_EQ(w.size(), 4u);
  // In table order.
  EXPECT_EQ(w[0], "mf2: warning: MF2_ROUTE=foo ignored (not a route; expected route_s, route_p or "
                  "cda); using the default route_s");
  EXPECT_EQ(w[1], "mf2: warning: MF2_RECLAIM_IDLE=nah ignored (not a boolean; expected 1, 0, yes, "
                  "no, true, false, on or off); using the default 1");
  EXPECT_EQ(w[2], "mf2: warning: MF2_RECLAIM_BATCH=0 ignored (below the minimum 1); using the "
                  "default 32");
  EXPECT_EQ(w[3], "mf2: warning: MF2_PAGE_CACHE_MB=99999999999999999999 ignored (above the "
                  "maximum 67108864 MiB); using the default 32 MiB");
}

TEST_F(OptionsTest, BooleansAcceptEveryUsualWord) {
  const char* const on[] = {"1", "yes", "true", "on", "YES", "True", "ON"};
  const char* const off[] = {"0", "no", "false", "off", "No", "FALSE", "Off"};
  std::vector<std::string> w;
  for (const char* v : on) {
    setenv("MF2_RECLAIM_IDLE", "0", 1);
    setenv("MF2_STATS", v, 1);
    setenv("MF2_ADOPT_PARTIAL_GATE", v, 1);
    Policy p = Parse(&w);
    EXPECT_TRUE(p.stats_at_exit) << v;
    EXPECT_TRUE(p.adopt_partial_gate) << v;
    EXPECT_FALSE(p.reclaim_idle);
    EXPECT_TRUE(w.empty()) << v;
  }
  for (const char* v : off) {
    setenv("MF2_RECLAIM_IDLE", v, 1);
    setenv("MF2_ADOPT_PARTIAL_GATE", v, 1);
    Policy p = Parse(&w);
    EXPECT_FALSE(p.reclaim_idle) << v;  // MF2_RECLAIM_IDLE=false was ignored before
    EXPECT_FALSE(p.adopt_partial_gate) << v;
    EXPECT_TRUE(w.empty()) << v;
  }
}

TEST_F(OptionsTest, SizesTakeTheirUnitOrAKMGSuffixAndDurationsUsMsS) {
  struct Good {
    const char* name;
    const char* value;
    uint64_t field;
  };
  const Good cases[] = {
      {"MF2_PAGE_CACHE_MB", "2", uint64_t{2} << 20},  // a bare number is the unit in the name
      {"MF2_PAGE_CACHE_MB", "32M", uint64_t{32} << 20},
      {"MF2_PAGE_CACHE_MB", "512K", uint64_t{512} << 10},
      {"MF2_PAGE_CACHE_MB", "1G", uint64_t{1} << 30},
      {"MF2_PAGE_CACHE_MB", "3mb", uint64_t{3} << 20},
      {"MF2_PAGE_CACHE_MB", "0", 0},
      {"MF2_LARGE_CACHE_MB", "1g", uint64_t{1} << 30},
      {"MF2_HEAP_EMPTY_KB", "4", uint64_t{4} << 10},
      {"MF2_HEAP_EMPTY_KB", "1M", uint64_t{1} << 20},
      {"MF2_HEAP_EMPTY_KB", "64kB", uint64_t{64} << 10},
      {"MF2_IDLE_US", "250", 250'000},
      {"MF2_IDLE_US", "5us", 5'000},
      {"MF2_RFR_US", "10ms", 10'000'000},
      {"MF2_RECLAIM_AFTER_US", "1s", 1'000'000'000},
      {"MF2_RECLAIM_AFTER_US", "3600s", uint64_t{3600} * 1'000'000'000},  // the maximum
      {"MF2_RECLAIM_BATCH", "1", 1},
      {"MF2_ADOPT_PRESSURE", "4294967295", 4294967295u},
      {"MF2_ROUTE", "route_p", static_cast<uint64_t>(Route::kRouteP)},
      {"MF2_ROUTE", "CDA", static_cast<uint64_t>(Route::kCda)},
      {"MF2_ON_ERROR", "report", static_cast<uint64_t>(OnError::kReport)},
  };
  for (const Good& c : cases) {
    SCOPED_TRACE(std::string(c.name) + "=" + c.value);
    setenv(c.name, c.value, 1);
    std::vector<std::string> w;
    const Policy p = Parse(&w);
    unsetenv(c.name);
    EXPECT_EQ(Field(p, c.name), c.field);
    EXPECT_TRUE(w.empty()) << w[0];
  }
}

TEST_F(OptionsTest, EveryDefaultIsInRangeAndPrintable) {
  const Policy defaults;
  for (size_t i = 0; i < OptionCount(); ++i) {
    const OptionInfo& o = OptionAt(i);
    SCOPED_TRACE(o.name);
    EXPECT_EQ(std::strncmp(o.name, "MF2_", 4), 0);
    EXPECT_EQ(FindOption(o.name), &o);
    if (o.type == OptionType::kString) continue;
    EXPECT_GE(o.load(defaults), o.min);
    EXPECT_LE(o.load(defaults), o.max);
    // The default, written as FormatOptionValue prints it, parses back to itself.
    char text[64];
    FormatOptionValue(o, o.load(defaults), text, sizeof(text));
    std::string written(text);
    if (o.type == OptionType::kSize || o.type == OptionType::kDuration) {
      written = written.substr(0, written.find(' '));  // a bare number is the option's unit
    }
    uint64_t v = 0;
    const char* why = "";
    EXPECT_TRUE(ParseOptionValue(o, written.c_str(), &v, &why)) << written << ": " << why;
    EXPECT_EQ(v, o.load(defaults)) << written;
  }
}

TEST_F(OptionsTest, GetAndSetRoundTripInTheOptionsUnits) {
  for (size_t i = 0; i < OptionCount(); ++i) {
    const OptionInfo& o = OptionAt(i);
    SCOPED_TRACE(o.name);
    if (o.type == OptionType::kString) continue;
    long long v = -1;
    ASSERT_TRUE(OptionGet(o.name, &v));
    EXPECT_EQ(static_cast<uint64_t>(v), o.load(GetPolicy()) / o.scale);
    EXPECT_EQ(OptionSet(o.name, v), 0);
    long long again = -1;
    ASSERT_TRUE(OptionGet(o.name, &again));
    EXPECT_EQ(again, v);
    // The smallest allowed value, then one below it (where there is one) and the largest.
    const long long lowest = static_cast<long long>((o.min + o.scale - 1) / o.scale);
    EXPECT_EQ(OptionSet(o.name, lowest), 0);
    ASSERT_TRUE(OptionGet(o.name, &again));
    EXPECT_EQ(again, lowest);
    if (lowest > 0) EXPECT_EQ(OptionSet(o.name, lowest - 1), EINVAL);
    const long long highest = static_cast<long long>(o.max / o.scale);
    EXPECT_EQ(OptionSet(o.name, highest), 0);
    EXPECT_EQ(OptionSet(o.name, highest + 1), EINVAL);
    EXPECT_EQ(OptionSet(o.name, -1), EINVAL);
    EXPECT_EQ(OptionSet(o.name, v), 0);
  }
  EXPECT_EQ(OptionSet("MF2_PAGE_CACHE_MB", 16), 0);
  EXPECT_EQ(GetPolicy().page_cache_bytes, size_t{16} << 20);
  EXPECT_EQ(OptionSet("MF2_IDLE_US", 300), 0);
  EXPECT_EQ(GetPolicy().idle_threshold_ns, 300'000u);
  EXPECT_EQ(OptionSet("MF2_IDLE_US", LLONG_MAX), EINVAL);  // overflows when scaled to ns
  EXPECT_EQ(OptionSet("MF2_ROUTE", static_cast<long long>(Route::kCda)), 0);
  EXPECT_EQ(CurrentRoute(), Route::kCda);
  long long route = -1;
  ASSERT_TRUE(OptionGet("MF2_ROUTE", &route));
  EXPECT_EQ(route, static_cast<long long>(Route::kCda));
  SetRoute(Route::kRouteS);  // mf2_set_route: OptionGet reports the route in force
  ASSERT_TRUE(OptionGet("MF2_ROUTE", &route));
  EXPECT_EQ(route, static_cast<long long>(Route::kRouteS));
}

// testing::ScopedPolicy, the one way tests set the policy, restores the route in force when it
// was made, also one that SetRoute (mf2_set_route) set without touching the policy.
TEST_F(OptionsTest, ScopedPolicyRestoresTheRouteSetBySetRoute) {
  SetRoute(Route::kRouteP);
  {
    testing::ScopedPolicy cda([](Policy* p) { p->route = Route::kCda; });
    EXPECT_EQ(CurrentRoute(), Route::kCda);
  }
  EXPECT_EQ(CurrentRoute(), Route::kRouteP);
}

// Copies of the policy are never freed (a reader may hold one), so OptionSet interns them: a
// program switching an option back and forth keeps one copy per distinct policy.
TEST_F(OptionsTest, SettingOptionsBackAndForthMakesNoNewCopies) {
  ASSERT_EQ(OptionSet("MF2_PENDING_BUDGET", 3), 0);
  ASSERT_EQ(OptionSet("MF2_PENDING_BUDGET", 5), 0);
  const uint64_t before = PolicyCopies();
  for (int i = 0; i < 100000; ++i) {
    ASSERT_EQ(OptionSet("MF2_PENDING_BUDGET", 3 + 2 * (i & 1)), 0);
  }
  EXPECT_EQ(GetPolicy().pending_budget, 5u);
  EXPECT_EQ(PolicyCopies(), before) << "100,000 settings of two policies made new copies";
}

TEST_F(OptionsTest, UnknownNamesAreRejected) {
  long long v = 7;
  EXPECT_FALSE(OptionGet("MF2_NO_SUCH_OPTION", &v));
  EXPECT_FALSE(OptionGet("mf2_page_cache_mb", &v));
  EXPECT_FALSE(OptionGet(nullptr, &v));
  EXPECT_EQ(v, 7);
  EXPECT_EQ(OptionSet("MF2_NO_SUCH_OPTION", 1), EINVAL);
  EXPECT_EQ(OptionSet(nullptr, 1), EINVAL);
  EXPECT_EQ(FindOption("MF2_PAGE_CACHE"), nullptr);
}

// Run under TSan: readers of GetPolicy() race with OptionSet and must see whole copies only.
TEST_F(OptionsTest, SetIsSafeWhileOtherThreadsRead) {
  ASSERT_EQ(OptionSet("MF2_PAGE_CACHE_MB", 8), 0);
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      // Relaxed: a stop flag; the readers' results go through `bad`, read after join.
      while (!stop.load(std::memory_order_relaxed)) {
        const Policy& p = GetPolicy();
        const size_t cache = p.page_cache_bytes;
        const size_t large = p.large_cache_bytes;
        // Both fields change together in every copy below.
        if (!(cache == (size_t{8} << 20) && large == (size_t{64} << 20)) &&
            !(cache == (size_t{16} << 20) && large == (size_t{128} << 20)) &&
            !(cache == (size_t{16} << 20) && large == (size_t{64} << 20))) {
          bad.fetch_add(1, std::memory_order_relaxed);  // Relaxed: a count read after join
        }
      }
    });
  }
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(OptionSet("MF2_PAGE_CACHE_MB", 16), 0);
    ASSERT_EQ(OptionSet("MF2_LARGE_CACHE_MB", 128), 0);
    ASSERT_EQ(OptionSet("MF2_LARGE_CACHE_MB", 64), 0);
    ASSERT_EQ(OptionSet("MF2_PAGE_CACHE_MB", 8), 0);
  }
  stop.store(true, std::memory_order_relaxed);  // Relaxed: see above
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(bad.load(std::memory_order_relaxed), 0);
}

TEST_F(OptionsTest, VerboseListsEveryOptionOnce) {
  Policy p;
  p.page_cache_bytes = size_t{512} << 10;
  const std::vector<std::string> lines = LinesWritten([&p](int fd) { PrintOptions(p, fd); });
  size_t i = 0;
  for (const std::string& line : lines) {
    ASSERT_LT(i, OptionCount());
    const OptionInfo& o = OptionAt(i);
    EXPECT_EQ(line.rfind(std::string("mf2: option ") + o.name + "=", 0), 0u) << line;
    EXPECT_NE(line.find(o.help), std::string::npos) << line;
    if (std::strcmp(o.name, "MF2_PAGE_CACHE_MB") == 0) {
      EXPECT_NE(line.find("=524288 bytes:"), std::string::npos) << line;  // not a whole MiB
    } else {
      EXPECT_NE(line.find(" (default): "), std::string::npos) << line;
    }
    ++i;
  }
  EXPECT_EQ(i, OptionCount());
}

TEST_F(OptionsTest, ReadmeTableListsEveryOption) {
  std::ifstream in("README.md");
  ASSERT_TRUE(in.good()) << "README.md is a data dependency";
  std::stringstream readme;
  readme << in.rdbuf();
  for (size_t i = 0; i < OptionCount(); ++i) {
    const std::string row = std::string("| `") + OptionAt(i).name + "` |";
    EXPECT_NE(readme.str().find(row), std::string::npos) << "README.md has no row " << row;
  }
}

// No option of the table is a string yet (MF2_STATS_FILE will be): the type on its own.
std::uintptr_t g_string_field = 0;
TEST_F(OptionsTest, StringOptionsKeepTheEnvironmentsText) {
  const OptionInfo o{"MF2_TEST_PATH",
                     OptionType::kString,
                     "",
                     1,
                     0,
                     UINT64_MAX,
                     "a path",
                     [](const Policy&) -> uint64_t { return g_string_field; },
                     [](Policy*, uint64_t v) { g_string_field = v; }};
  const char* text = "/tmp/stats.txt";
  uint64_t v = 0;
  const char* why = "";
  ASSERT_TRUE(ParseOptionValue(o, text, &v, &why));
  EXPECT_EQ(reinterpret_cast<const char*>(v), text);
  char buf[64];
  FormatOptionValue(o, v, buf, sizeof(buf));
  EXPECT_STREQ(buf, text);
  FormatOptionValue(o, 0, buf, sizeof(buf));
  EXPECT_STREQ(buf, "(not set)");
}

TEST(RouteNames, ParseRouteIsExact) {
  Route r = Route::kRouteS;
  EXPECT_TRUE(ParseRoute("route_p", &r));
  EXPECT_EQ(r, Route::kRouteP);
  EXPECT_FALSE(ParseRoute("foo", &r));
  EXPECT_FALSE(ParseRoute(nullptr, &r));
  EXPECT_EQ(r, Route::kRouteP);
}

}  // namespace
}  // namespace mf2
