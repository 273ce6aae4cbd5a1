#include "mf2/fence.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace mf2 {
namespace {

enum Kind : int { kUnknown = 0, kPrivate = 1, kGlobal = 2, kNone = 3 };

// Relaxed: every thread that probes finds the same answer; a race only probes twice.
std::atomic<int> g_kind{kUnknown};

long Membarrier(int cmd) { return syscall(SYS_membarrier, cmd, 0u, 0); }

int Probe() {
  const long cmds = Membarrier(MEMBARRIER_CMD_QUERY);
  int kind = kNone;
  if (cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 &&
      Membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0) {
    kind = kPrivate;
  } else if (cmds > 0 && (cmds & MEMBARRIER_CMD_GLOBAL) != 0) {
    kind = kGlobal;
  }
  g_kind.store(kind, std::memory_order_relaxed);
  return kind;
}

}  // namespace

bool AsymmetricFenceHeavyAvailable() {
  int kind = g_kind.load(std::memory_order_relaxed);
  if (kind == kUnknown) kind = Probe();
  return kind != kNone;
}

bool AsymmetricFenceHeavy() {
  int kind = g_kind.load(std::memory_order_relaxed);
  if (kind == kUnknown) kind = Probe();
  if (kind == kPrivate) {
    if (Membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return true;
    // EPERM: not registered in this process (a fork child may start unregistered): register
    // and try once more; anything else falls back to the global command.
    if (errno == EPERM && Membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0 &&
        Membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) {
      return true;
    }
    g_kind.store(kind = kGlobal, std::memory_order_relaxed);
  }
  if (kind == kGlobal) {
    if (Membarrier(MEMBARRIER_CMD_GLOBAL) == 0) return true;
    g_kind.store(kNone, std::memory_order_relaxed);
  }
  return false;
}

}  // namespace mf2
