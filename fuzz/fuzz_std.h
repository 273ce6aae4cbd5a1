// The standard library as the fuzz harnesses use it, left out of libFuzzer's coverage: include
// this before any other header in a fuzz target.
//
// The harnesses keep their shadow state (live lists, range maps, per-page counts) in standard
// containers. Instrumented, every rebalancing path and hash-bucket walk of those containers is
// a "feature" to libFuzzer: it guides nothing (it reflects the shadow's shape, not the
// allocator's), grows the corpus with inputs that differ only there, and libFuzzer's per-feature
// bookkeeping (InputCorpus::UpdateFeatureFrequency) cost up to a third of every execution.
// Functions declared in these headers, templates included, get no_sanitize("coverage"); the
// allocator and the harnesses' own op dispatch keep their coverage.
#ifndef MF2_FUZZ_FUZZ_STD_H_
#define MF2_FUZZ_FUZZ_STD_H_

#if defined(__clang__) && __clang_major__ >= 13
#pragma clang attribute push(__attribute__((no_sanitize("coverage"))), apply_to = function)
#endif

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iterator>
#include <map>
#include <mutex>
#include <new>
#include <set>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#if defined(__clang__) && __clang_major__ >= 13
#pragma clang attribute pop
#endif

#endif  // MF2_FUZZ_FUZZ_STD_H_
