// Internal hooks of the statistics report (stats_report.cc); the public functions are
// mf2::GetStats / mf2::PrintStats (mf2.hpp) and mf2_stats_get / mf2_stats_print (mf2.h).
#ifndef MF2_STATS_REPORT_H_
#define MF2_STATS_REPORT_H_

namespace mf2 {

// The summary MF2_STATS=1 (or MF2_STATS_FILE) asks for, printed at most once per process; a
// no-op when neither is set or it was printed already. Called by a static destructor in
// mf2.cc, the object every program that uses MF2 links, which also pulls this report's object
// (and its load-time capture of MF2_STATS_FILE) into static links and the preload library.
void PrintStatsAtExit();

}  // namespace mf2

#endif  // MF2_STATS_REPORT_H_
