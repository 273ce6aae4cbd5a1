// Overrides MF2's policy for one test and restores the previous one afterwards. Tests only: the
// policy is read without synchronisation, so no other thread may be inside MF2 while it changes.
#ifndef MF2_TESTING_SCOPED_POLICY_H_
#define MF2_TESTING_SCOPED_POLICY_H_

#include "mf2/policy.h"

namespace mf2 {
namespace testing {

class ScopedPolicy {
 public:
  template <typename Edit>
  explicit ScopedPolicy(Edit edit) : saved_(GetPolicy()) {
    Policy p = saved_;
    p.route = CurrentRoute();
    edit(&p);
    SetPolicyForTesting(p);
  }
  ~ScopedPolicy() { SetPolicyForTesting(saved_); }
  ScopedPolicy(const ScopedPolicy&) = delete;
  ScopedPolicy& operator=(const ScopedPolicy&) = delete;

 private:
  Policy saved_;
};

}  // namespace testing
}  // namespace mf2

#endif  // MF2_TESTING_SCOPED_POLICY_H_
