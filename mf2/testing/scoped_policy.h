// Overrides MF2's policy for one test and restores the previous one afterwards: the one way tests
// set the policy (SetPolicyForTesting directly would leak the change into the next test).
//
//   ScopedPolicy policy([](Policy* p) { p->remote_batch = 1; });  // edits the policy in force
//
// Scopes nest: a fixture member sets what every test of the fixture needs, and a test's own
// ScopedPolicy edits on top of it. An edit that changes nothing still restores the policy (and the
// route) in force at construction, for a test that changes them through OptionSet or SetRoute.
// Tests only: the policy is read without synchronisation, so no other thread may be inside MF2
// while it changes.
#ifndef MF2_TESTING_SCOPED_POLICY_H_
#define MF2_TESTING_SCOPED_POLICY_H_

#include "mf2/policy.h"

namespace mf2 {
namespace testing {

class ScopedPolicy {
 public:
  template <typename Edit>
  explicit ScopedPolicy(Edit edit) : saved_(GetPolicy()) {
    // The route in force: SetRoute (mf2_set_route) changes it without touching the policy.
    saved_.route = CurrentRoute();
    Policy p = saved_;
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
