// Compiler hints shared by every layer (as absl/base/optimization.h): branch prediction and
// inlining. Nothing else, so any header may include it.
#ifndef MF2_BASE_H_
#define MF2_BASE_H_

#define MF2_PREDICT_TRUE(x) __builtin_expect(!!(x), 1)
#define MF2_PREDICT_FALSE(x) __builtin_expect(!!(x), 0)
#define MF2_ALWAYS_INLINE inline __attribute__((always_inline))
#define MF2_NOINLINE __attribute__((noinline))

#endif  // MF2_BASE_H_
