// The background reclaimer (phase 3 of docs/design.md): one thread that releases the whole
// pages of owners that went idle, when no free is left to do it.
//
// Without it, the freeing thread releases an idle owner's whole pages itself
// (Heap::ReclaimIdleOwner_mt), but only from a free that completes a page while the owner is
// already idle and has Policy::reclaim_batch such pages. A producer whose consumer frees everything
// within Policy::reclaim_after_ns of the producer's last slow path therefore kept all of it: no
// free came later. Every free that brings a page back whole now notifies this thread instead, which
// looks at every heap with whole pages waiting, sweeps those whose owner has been idle for
// reclaim_after_ns (through a heap of its own, as a freeing thread would), and sleeps until the
// earliest moment one of the others could be idle (at least 1 ms), then looks again. Freeing
// threads leave the sweeps to it (Heap::RequestSweep_mt): the sweep, and the madvise of the spans
// it releases, are off their path; they sweep themselves only without the reclaimer, or when it is
// starved (Starved: a notification unserved for 100 ms).
//
// Before it sweeps an idle owner, it does the owner's GoIdle (Heap::FlushIdleOwner_mt, heap.h "The
// idle flush"): it parks the heap between two of the owner's operations (a membarrier makes that
// handshake safe with two plain stores on the owner's side), returns the owner's cached blocks
// and held remote frees, collects its active pages and queue, and releases what is empty, so
// blocks in an idle thread's caches no longer pin pages. Freeing threads never do this.
//
// A thread can go idle holding pages none of which ever comes back whole: a thread pool's
// worker that freed its own blocks keeps its caches, its active pages and what it carved of them
// (1.5 MiB per worker in bench/RESULTS.md's pool). So the reclaimer also flushes every heap that
// has allocated since it was last flushed and has then taken no allocation slow path for
// Policy::idle_flush_after_ns (1 s; Heap::FlushLongIdleOwner_mt): the same GoIdle, and its
// caches' slot pages go back to the OS.
// A flushed heap is not looked at again until its owner's next slow path, which notifies the
// reclaimer (NotifyHeapActive); until every heap is flushed, the reclaimer wakes for the
// earliest one due (about four times a second in a process whose threads keep working: a heap
// seen working is looked at again a quarter threshold later). "Idle" is
// the slow-path clock that the sweeps use: a thread that runs on its caches alone for that long
// is flushed too (it refills them).
//
// It costs nothing while nothing is owed: it starts on the first notification, or when a
// second thread takes a heap (StartForIdleFlush: no thread in a single-threaded process),
// and then waits for a notification without a timeout (no wake-ups, no CPU) once no heap has
// whole pages waiting or is owed an idle flush and the page source's cache and the large
// mappings' cache are empty; while either holds memory, it also wakes once per
// MF2_PAGE_CACHE_DECAY_US to return what nobody used meanwhile (OsPageSource::Decay,
// LargeDecay), so an idle process gives its caches back too, and once per
// MF2_PAGE_CACHE_EXCESS_DECAY_US while the span cache holds more than its reserve. A
// notification is one relaxed load when the thread is awake or already notified, and a futex
// wake only when it waits for one. MF2_BACKGROUND_RECLAIM=0 turns it off (then freeing threads
// sweep, as described above, and the caches do not decay).
//
// Lost wake-ups: a completer counts its page (a seq_cst RMW on the owner's whole count) before it
// notifies (a seq_cst exchange of `pending`); the reclaimer clears `pending` (seq_cst) before it
// scans the counts (seq_cst loads), and sleeps only on pending == 0. Store-buffering shape with
// every access seq_cst: either the scan sees the count, or the exchange comes after the clear and
// the futex wait returns at once. Spin model: model/reclaimer.pml (with three mutants that lose
// a wake-up). A cache going non-empty, or the span cache going past its reserve while its short
// decay is stopped, is the same shape: FreeSpan (LargeFree) fills it under the page source's (the
// large table's) lock, then notifies; Decay (LargeDecay) reads it under that lock after the
// clear. A heap's first slow path after an idle flush bumps its epoch (relaxed), then sets a
// second word with an exchange (NotifyHeapActive), which the reclaimer clears with an
// exchange before each pass: it reads that exchange or a later one, so the notifier's epoch
// happens before the pass that follows (release sequence), which sees the heap owed. Only the
// reclaimer's wait without a timeout is interrupted for it (a store-buffering pair of seq_cst
// flags); every other wait ends within the idle threshold.
#ifndef MF2_RECLAIMER_H_
#define MF2_RECLAIMER_H_

#include <cstdint>

#include "mf2/mutex.h"

namespace mf2 {
namespace reclaimer {

// A page of some heap came back whole (any thread, on the free path, holding no MF2 lock).
// Starts the thread on first use.
void Notify();
// The same, except that a reclaimer not running is not started (the page source's decay: a
// process is given no thread for that alone).
void NotifyIfRunning();
// A heap's first allocation slow path since its last idle flush, or since it was made or taken
// over (Heap::AllocateSlow): the reclaimer's next pass looks at it again, and a reclaimer that
// waits without a timeout (every heap flushed) is woken. Does not start the thread. Publishes
// the caller's slow-path epoch to that pass.
void NotifyHeapActive();
// A second thread took a heap (a multi-threaded process): starts the thread for the idle
// flush of long-idle threads (Policy::idle_flush_after_ns), unless that or the reclaimer is off.
// No notification: the first pass finds nothing idle yet. Called outside any heap operation
// (creating the thread allocates, on the caller's heap).
void StartForIdleFlush();

// Whether a notification has waited kStarvedNs without a pass (the thread starved of CPU): then
// freeing threads sweep idle owners themselves again. One relaxed load while nothing waits.
bool Starved();
inline constexpr uint64_t kStarvedNs = 100'000'000;  // 100 ms
// Starved()'s test of the time of the pending notification, `notified_ns`, against a clock
// reading `now_ns` (both NowNs()). Another thread may store a notification time later than our
// reading (the reclaimer cleared the notification and someone notified again in between): that
// is a fresh notification. Unsigned, now_ns - notified_ns would wrap around to an age of
// centuries, and a freeing thread would sweep an owner itself as if the reclaimer had starved.
constexpr bool WaitedTooLong(uint64_t now_ns, uint64_t notified_ns) {
  return now_ns > notified_ns && now_ns - notified_ns > kStarvedNs;
}

// Whether the background reclaimer sweeps (MF2_BACKGROUND_RECLAIM on, and its thread running or
// not started yet): freeing threads then leave sweeps to it.
bool Available();

// fork(), in the child: the thread did not survive the fork; the next notification starts one.
void AfterForkInChild();

// Held by the thread for each pass (its sweeps and flushes, and the pages they hold popped off
// a queue meanwhile) and by HeapRegistry::CheckAll(quiescent = true): a quiescent check asserts
// that no MF2 work is in flight, and a pass is the one piece of such work that the thread
// calling the check cannot stop by itself. Without it, a check made while a sweep held pages it
// had popped off an owner's queue found them flagged and not queued, and failed (invariant 7).
// Lock order: first, before the idle flush's (fork.cc).
Mutex& PassMutex();

// Tests and statistics: sweeps run, and whether the thread runs.
uint64_t Passes();
bool Running();
// Tests: the thread waits for a notification and none is pending (so no pass runs until the
// next notification or decay).
bool WaitingForTesting();

}  // namespace reclaimer
}  // namespace mf2

#endif  // MF2_RECLAIMER_H_
