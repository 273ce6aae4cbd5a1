#include "mf2/stats.h"

namespace mf2 {

void HeapStats::AddTo(Stats* s) const {
#define MF2_STATS_ADD(name, desc) s->name += Get(k_##name);
  MF2_COUNTERS(MF2_STATS_ADD)
#undef MF2_STATS_ADD
}

}  // namespace mf2
