// Asymmetric fences: a free one for a thread on a hot path, an expensive one for a rare party,
// which together order memory as two seq_cst fences would. This is the pattern of the C++
// proposal P1202 (asymmetric_thread_fence_light / asymmetric_thread_fence_heavy), which folly
// and liburcu implement the same way on Linux.
//
//   light  a compiler barrier only (atomic_signal_fence(seq_cst)): no instruction. The hot
//          thread's accesses before it stay before it, those after it stay after it, in the
//          instruction stream.
//   heavy  membarrier(2): before it returns, every thread of the process that is running has
//          executed a full memory barrier at some point of its instruction stream, and a thread
//          that is not running passes one (the context switch) before it runs again.
//
// Why that is a pair of seq_cst fences: let the hot thread H run "store X; light; load Y" and
// the rare thread R "store Y; heavy; load X". The heavy fence splits H's instruction stream at
// one point P, with a full barrier at P. If H's store of X is before P, it is visible to every
// thread when membarrier returns, so R's load of X sees it. Otherwise H's load of Y is after P
// too (the light fence keeps program order in the instruction stream), and R's store of Y was
// visible before the barrier at P, so H sees it. The store-buffering outcome (each load misses
// the other thread's store) is impossible, as with seq_cst fences on both sides. The spin model
// model/park_sb.pml models exactly this (the heavy fence as that split point).
#ifndef MF2_FENCE_H_
#define MF2_FENCE_H_

#include <atomic>

#include "mf2/base.h"

namespace mf2 {

MF2_ALWAYS_INLINE void AsymmetricFenceLight() {
  std::atomic_signal_fence(std::memory_order_seq_cst);
}

// The heavy fence: membarrier's private expedited command (registered on first use, and again
// after a fork), else its global command (slow: waits for an RCU grace period). Returns false,
// having fenced nothing, when the kernel offers neither (no membarrier, or a seccomp filter that
// refuses it): the caller must then do without. Makes a system call: never on a hot path.
bool AsymmetricFenceHeavy();
// Whether AsymmetricFenceHeavy can fence (probing the kernel on first use, no fence): false when
// it would always return false. A fence that was available may still fail later (a seccomp
// filter installed since).
bool AsymmetricFenceHeavyAvailable();

}  // namespace mf2

#endif  // MF2_FENCE_H_
