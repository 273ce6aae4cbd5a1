// The background reclaimer (phase 3 of docs/design.md): one thread that releases the whole
// pages of owners that went idle, when no free is left to do it.
//
// The freeing thread releases an idle owner's whole pages itself (Heap::ReclaimIdleOwner_mt),
// but only from a free that completes a page while the owner is already idle and has
// Policy::reclaim_batch such pages. A producer whose consumer frees everything within
// Policy::reclaim_after_ns of the producer's last slow path therefore kept all of it: no free
// came later. Every free that brings a page back whole now also notifies this thread, which
// looks at every heap with whole pages waiting, sweeps those whose owner has been idle for
// reclaim_after_ns (through a heap of its own, as a freeing thread would), and checks the others
// again later, backing off from reclaim_after_ns / 2 up to a second while they stay busy.
//
// It costs nothing while nothing is owed: it starts on the first notification (no thread in a
// process whose pages never come back whole), and sleeps without a timeout (no wake-ups, no CPU)
// once no heap has whole pages waiting. A notification is one relaxed load when the thread is
// awake or already notified, and a futex wake only when it sleeps without a timeout.
// MF2_BACKGROUND_RECLAIM=0 turns it off (then only freeing threads reclaim, as before).
//
// Lost wake-ups: a completer counts its page (a seq_cst RMW on the owner's whole count) before it
// notifies (a seq_cst exchange of `pending`); the reclaimer clears `pending` (seq_cst) before it
// scans the counts (seq_cst loads), and sleeps only on pending == 0. Store-buffering shape with
// every access seq_cst: either the scan sees the count, or the exchange comes after the clear and
// the futex wait returns at once. Spin model: model/reclaimer.pml (with three mutants that lose
// a wake-up).
#ifndef MF2_RECLAIMER_H_
#define MF2_RECLAIMER_H_

#include <cstdint>

namespace mf2 {
namespace reclaimer {

// A page of some heap came back whole (any thread, on the free path, holding no MF2 lock).
// Starts the thread on first use.
void Notify();

// fork(), in the child: the thread did not survive the fork; the next notification starts one.
void AfterForkInChild();

// Tests and statistics: sweeps run, and whether the thread runs.
uint64_t Passes();
bool Running();

}  // namespace reclaimer
}  // namespace mf2

#endif  // MF2_RECLAIMER_H_
