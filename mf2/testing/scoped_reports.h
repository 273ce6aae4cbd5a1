// Collects MF2's misuse reports for a test instead of letting the handler in force act on them
// (the default aborts), and puts the previous handler back when it goes out of scope.
//
//   testing::ScopedReports reports;       // a test's local, or a fixture member
//   ... misuse on purpose ...
//   std::vector<ErrorReport> got = reports.Take();
//
// Reports may arrive from any thread (Take is synchronised with them). reports() hands out the
// list itself, for a test whose reports all come from its own thread. One at a time.
#ifndef MF2_TESTING_SCOPED_REPORTS_H_
#define MF2_TESTING_SCOPED_REPORTS_H_

#include <mutex>
#include <utility>
#include <vector>

#include "mf2/check.h"

namespace mf2 {
namespace testing {

class ScopedReports {
 public:
  ScopedReports() {
    current_ = this;
    previous_ = SetErrorHandler(&Record);
  }
  ~ScopedReports() {
    SetErrorHandler(previous_);
    current_ = nullptr;
  }
  ScopedReports(const ScopedReports&) = delete;
  ScopedReports& operator=(const ScopedReports&) = delete;

  // Every report so far, oldest first; the list is empty afterwards.
  std::vector<ErrorReport> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(reports_, {});
  }

  // The list itself, not synchronised: only while no other thread can report.
  std::vector<ErrorReport>& reports() { return reports_; }

 private:
  static void Record(const ErrorReport& r) {
    std::lock_guard<std::mutex> lock(current_->mu_);
    current_->reports_.push_back(r);
  }

  // The instance Record appends to (an ErrorHandler is a plain function pointer).
  static inline ScopedReports* current_ = nullptr;
  std::mutex mu_;
  std::vector<ErrorReport> reports_;
  ErrorHandler previous_ = nullptr;
};

}  // namespace testing
}  // namespace mf2

#endif  // MF2_TESTING_SCOPED_REPORTS_H_
