// Compiler hints shared by every layer (as absl/base/optimization.h): branch prediction,
// inlining and register use. Nothing else, so any header may include it.
#ifndef MF2_BASE_H_
#define MF2_BASE_H_

#define MF2_PREDICT_TRUE(x) __builtin_expect(!!(x), 1)
#define MF2_PREDICT_FALSE(x) __builtin_expect(!!(x), 0)
#define MF2_ALWAYS_INLINE inline __attribute__((always_inline))
#define MF2_NOINLINE __attribute__((noinline))
// Makes the compiler hold pointer `p` in a register from here on (an empty asm that may change
// it), so that the fields reached through it are addressed as register + offset. For a pointer
// into an object at a variable index (a heap's cache of class k) clang otherwise rebuilds the
// address from its parts at each access, which cost Heap::Free two instructions.
#define MF2_IN_REGISTER(p) __asm__("" : "+r"(p))

#endif  // MF2_BASE_H_
