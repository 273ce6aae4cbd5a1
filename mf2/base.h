// Compiler hints shared by every layer (as absl/base/optimization.h): branch prediction,
// inlining, register use, constant initialisation; and StaticObject. Nothing else, so any header
// may include it.
#ifndef MF2_BASE_H_
#define MF2_BASE_H_

#define MF2_PREDICT_TRUE(x) __builtin_expect(!!(x), 1)
#define MF2_PREDICT_FALSE(x) __builtin_expect(!!(x), 0)
#define MF2_ALWAYS_INLINE inline __attribute__((always_inline))
#define MF2_NOINLINE __attribute__((noinline))
// A function run once or on error only: laid out apart, and never inlined into its callers
// (inlined, its calls would cost them a stack frame on every call).
#define MF2_COLD __attribute__((cold, noinline))
// Makes the compiler hold pointer `p` in a register from here on (an empty asm that may change
// it), so that the fields reached through it are addressed as register + offset. For a pointer
// into an object at a variable index (a heap's cache of class k) clang otherwise rebuilds the
// address from its parts at each access, which cost Heap::Free two instructions.
#define MF2_IN_REGISTER(p) __asm__("" : "+r"(p))
// A variable with static storage so marked must be constant-initialised (checked by clang; C++20's
// constinit).
#if defined(__clang__)
#define MF2_CONSTINIT [[clang::require_constant_initialization]]
#else
#define MF2_CONSTINIT
#endif

namespace mf2 {

// A process-wide object that is constant-initialised (ready before any constructor runs: malloc
// is called before static constructors and after static destructors) and never destroyed. T's
// default constructor must be constexpr; declare the variable MF2_CONSTINIT. (A function-local
// static built by placement new would need the C++ runtime's guard functions, which the shared
// library does not link: MF2_NO_CXX_RUNTIME in tools/mf2.bzl.)
template <typename T>
union StaticObject {
  constexpr StaticObject() : value() {}
  ~StaticObject() {}  // never destroys `value`
  T value;
};

}  // namespace mf2

#endif  // MF2_BASE_H_
