/* MF2's public C API: a self-contained C99 header (C++ code includes it too; the C++ API is
 * mf2/mf2.hpp).
 *
 *   void* p = mf2_malloc(n);            NULL + errno = ENOMEM on failure
 *   p = mf2_realloc(p, 2 * n);          NULL + errno = ENOMEM on failure, p still valid
 *   mf2_free(p);                        from any thread; misuse is reported (abort by default)
 *
 *   mf2_heap_t* h = mf2_heap_new();     an explicit heap: one user at a time (see below)
 *   void* q = mf2_heap_malloc(h, n);
 *   mf2_heap_delete(h);                 q stays valid; mf2_free(q) later, from any thread
 *
 * Common rules
 *  - Every function may be called from any thread, at any time, including before main and
 *    during thread or process teardown, except the heap functions, whose rule is given below.
 *  - Allocation failures return NULL with errno = ENOMEM; bad arguments return NULL (or -1)
 *    with errno = EINVAL.
 *  - Blocks are aligned to 16 bytes at least. A block may be freed by any thread.
 *  - Misuse (double free, a pointer MF2 did not hand out, an interior pointer, a deleted heap)
 *    is reported on stderr naming the call and the pointer, and aborts; with the environment
 *    variable MF2_ON_ERROR=report the call is reported and ignored instead. The misused memory
 *    is never absorbed.
 *  - Environment (read once, when MF2 is loaded or first allocates): MF2_STATS=1 prints
 *    mf2_stats_print's report to stderr when the process exits (through exit() or returning
 *    from main; once per process: a fork child that exits prints its own, with its pid).
 *    MF2_STATS_FILE=path appends it to `path` instead (implies MF2_STATS=1; `%p` in the path
 *    becomes the process id), for programs that close stderr. MF2_ROUTE, MF2_ON_ERROR and the
 *    tuning variables are described in the README.
 *
 * Every function here is also exported by the drop-in malloc library (libmf2_malloc.so), so a
 * program that runs with MF2 preloaded can call them (through dlsym, or by linking MF2).
 */
#ifndef MF2_MF2_H_
#define MF2_MF2_H_

#include <stddef.h>
#include <stdint.h>

/* ---- Version ---------------------------------------------------------------------------- */

#define MF2_VERSION_MAJOR 0
#define MF2_VERSION_MINOR 4
#define MF2_VERSION_PATCH 0
/* The version as one number, MAJOR * 10000 + MINOR * 100 + PATCH (0.4.0 is 400), so versions
 * compare with < and >. */
#define MF2_VERSION (MF2_VERSION_MAJOR * 10000 + MF2_VERSION_MINOR * 100 + MF2_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

/* The version of the library actually linked or preloaded, packed as MF2_VERSION. Compare it
 * with MF2_VERSION (the header compiled against) to detect a mismatched library. */
int mf2_version(void);

/* ---- Allocation (the calling thread's heap) ---------------------------------------------- */

/* A block of at least `size` bytes (a unique minimum block for size 0). NULL with
 * errno = ENOMEM when memory is exhausted or `size` cannot be satisfied. */
void* mf2_malloc(size_t size);

/* `n` * `size` zeroed bytes. NULL with errno = ENOMEM when the product overflows or memory is
 * exhausted. */
void* mf2_calloc(size_t n, size_t size);

/* C realloc: resizes the block `p` to `size` bytes, keeping its contents up to the smaller
 * size; may move it (the result is then a new block and `p` is freed). p == NULL allocates;
 * size == 0 frees `p` and returns NULL. On failure returns NULL with errno = ENOMEM and `p`
 * stays valid and unchanged. `p` must be a live MF2 block (misuse is reported as mf2_realloc). */
void* mf2_realloc(void* p, size_t size);

/* Frees `p`, a block from any MF2 allocation function or heap, from any thread. NULL is
 * ignored. A double free, or a pointer MF2 did not hand out, is reported (see above). */
void mf2_free(void* p);

/* C11 aligned_alloc: a block of at least `size` bytes aligned to `alignment`, which must be a
 * power of two (else NULL with errno = EINVAL); `size` need not be a multiple of it. NULL with
 * errno = ENOMEM on exhaustion. Freed with mf2_free. */
void* mf2_aligned_alloc(size_t alignment, size_t size);

/* The usable size of the live block `p` (its size class, >= the size asked for); the whole of
 * it may be written. 0 for NULL. A pointer that is not a live MF2 block is reported and gives 0. */
size_t mf2_usable_size(const void* p);

/* ---- Explicit heaps ----------------------------------------------------------------------
 *
 * A heap of one's own, as mimalloc's mi_heap_t: blocks allocated from it come from its own
 * pages, apart from the thread's heap (a request's or a subsystem's memory kept together).
 *
 * Rules:
 *  - A heap is used (mf2_heap_malloc, _calloc, _realloc, _aligned_alloc, _free, _delete) by
 *    one thread at a time: the thread that created it, or another thread it was handed to
 *    with synchronisation of the program's own (a mutex, a queue) between the two users.
 *  - Its blocks are ordinary MF2 blocks: any thread may free them with mf2_free (or
 *    mf2_realloc them), before or after the heap is deleted, and mf2_usable_size works on them.
 *  - mf2_heap_delete abandons the heap to MF2: its live blocks stay valid and are freed as
 *    usual; its pages return to MF2 as their blocks come back, and MF2 may hand the heap's
 *    memory (and the heap itself) to other threads or to a later mf2_heap_new.
 *  - A heap that is never deleted keeps its pages for itself: blocks freed into it by other
 *    threads are reused only when it allocates again.
 *  - Using a deleted heap, or a pointer that is not a heap, is reported as misuse (when it can
 *    be told: a deleted heap's memory may already belong to a new heap).
 */
typedef struct mf2_heap_s mf2_heap_t;

/* A new heap owned by the calling thread. NULL with errno = ENOMEM if memory for it cannot be
 * mapped. */
mf2_heap_t* mf2_heap_new(void);

/* Abandons `heap` (see the rules above); NULL is ignored. */
void mf2_heap_delete(mf2_heap_t* heap);

/* As mf2_malloc, mf2_calloc, mf2_realloc and mf2_aligned_alloc, with the new memory taken from
 * `heap`. mf2_heap_realloc may be given any live MF2 block `p` (from any heap); a moved block's
 * new home is `heap`. A `heap` that is not a live heap is reported and gives NULL with
 * errno = EINVAL. */
void* mf2_heap_malloc(mf2_heap_t* heap, size_t size);
void* mf2_heap_calloc(mf2_heap_t* heap, size_t n, size_t size);
void* mf2_heap_realloc(mf2_heap_t* heap, void* p, size_t size);
void* mf2_heap_aligned_alloc(mf2_heap_t* heap, size_t alignment, size_t size);

/* Frees `p` (any live MF2 block; NULL is ignored) as `heap`'s user: the same as mf2_free, and
 * faster when `p` came from `heap` (a local free instead of a hand-back to the heap). */
void mf2_heap_free(mf2_heap_t* heap, void* p);

/* ---- Statistics -------------------------------------------------------------------------
 *
 * Counters are per heap and merged when read; the algorithm counters (the first group) count
 * slow-path and remote-path events only and are 0 in a build with -DMF2_STATS=0. Byte figures
 * are process-wide. A snapshot taken while other threads allocate is approximate (each field
 * is read once, not all at one instant).
 */
/* Before 1.0, a minor release may add fields (0.4.0 added heap_moves), which changes the
 * struct's size: build against the mf2.h of the library you run. */
typedef struct mf2_stats {
  /* Algorithm counters, in the order of MF2's counter list (mf2_stats_print describes each). */
  uint64_t slow_allocs;
  uint64_t mustreuse_hit;
  uint64_t active_drain_hit;
  uint64_t partial_hit;
  uint64_t abandoned_adopt_hit;
  uint64_t new_pages;
  uint64_t page_reuses;
  uint64_t pending_enqueued;
  uint64_t pending_drained;
  uint64_t drain_attempts;
  uint64_t drain_successes;
  uint64_t remote_blocks_drained;
  uint64_t remote_frees;
  uint64_t remote_chains;
  uint64_t pages_released;
  uint64_t heaps_abandoned;
  uint64_t heaps_reused;
  uint64_t dead_owner_reclaims;
  uint64_t pages_adopted;
  uint64_t adopt_allowed;
  uint64_t adopt_blocked_owner_active;
  uint64_t adopt_blocked_owner_partial;
  uint64_t adopt_blocked_pressure;
  uint64_t adopt_blocked_deadline;
  uint64_t adopt_blocked_remote_count;
  uint64_t adopt_no_candidate;
  uint64_t reclaim_blocked_owner_active;
  uint64_t idle_reclaims;
  uint64_t pages_reclaimed;
  uint64_t detached_frees;
  uint64_t large_allocs;
  uint64_t cache_refills;
  uint64_t blocks_refilled;
  uint64_t cache_flushes;
  uint64_t blocks_flushed;
  uint64_t cache_drops;
  uint64_t cache_grows;
  uint64_t dead_thread_allocs;
  uint64_t exited_thread_heaps;
  uint64_t heap_moves;
  /* Page source: 4 MiB segments mapped and unmapped since start, spans given back to the OS,
   * bytes of spans held by heaps now, bytes of free spans kept resident for reuse, times the OS
   * refused memory and MF2 released its caches before retrying, cached spans given back after
   * MF2_PAGE_CACHE_DECAY_US unused. */
  uint64_t segments_mapped;
  uint64_t segments_unmapped;
  uint64_t spans_returned_to_os;
  uint64_t bytes_in_use_spans;
  uint64_t bytes_cached_spans;
  uint64_t memory_pressure_events;
  uint64_t spans_decayed;
  /* Process-wide figures. "In use" is memory handed to heaps (whole spans, with their free
   * blocks) plus live large blocks (above 64 KiB); "committed" adds the free spans and large
   * mappings kept for reuse; "reserved" is all address space MF2 holds. */
  uint64_t large_count;        /* live large blocks */
  uint64_t bytes_large_live;   /* bytes of live large blocks' mappings */
  uint64_t bytes_large_cached; /* bytes of freed large mappings kept for reuse */
  uint64_t bytes_in_use;       /* bytes_in_use_spans + bytes_large_live */
  uint64_t bytes_in_use_peak;  /* the highest bytes_in_use since the process started */
  uint64_t bytes_committed;    /* bytes_in_use + bytes_cached_spans + bytes_large_cached */
  uint64_t bytes_reserved;     /* mapped segments * 4 MiB + large mappings (live and cached) */
} mf2_stats;

/* Fills `*out` (must not be NULL) with the merged counters of every heap and the process-wide
 * figures. Takes MF2's internal locks briefly; never allocates. */
void mf2_stats_get(mf2_stats* out);

/* Writes a readable report to the file descriptor `fd`, every line starting with "mf2_stats:":
 * the process id and name, bytes in use, committed, reserved and their peaks, the process's
 * resident size, every counter with its description in aligned columns, and one final line of
 * key=value fields for scripts. Never allocates (so it works inside malloc hooks and while the
 * heap is in any state); takes MF2's locks briefly, so not from a signal handler. Write errors
 * are ignored. This is the report MF2_STATS=1 prints at exit. */
void mf2_stats_print(int fd);

/* ---- Options and policy -----------------------------------------------------------------
 *
 * Options are MF2's tuning knobs, named as their environment variables without the MF2_
 * prefix, in lower case (MF2_PENDING_BUDGET is "pending_budget"); the README lists them. */

/* Reads option `name` into `*value`. Returns 0, or -1 with errno = EINVAL for an unknown name
 * or a NULL argument. */
int mf2_option_get(const char* name, long long* value);

/* Sets option `name` to `value` for the whole process, effective at the option's next use.
 * Returns 0, or -1 with errno = EINVAL for an unknown name or a value the option does not
 * accept (the option then keeps its value). */
int mf2_option_set(const char* name, long long value);

/* Switches the slow-path route at run time: "route_s", "route_p" or "cda" (the environment's
 * MF2_ROUTE sets the initial one). Returns 0, or -1 with errno = EINVAL for another name. */
int mf2_set_route(const char* name);

/* The route in force: "route_s", "route_p" or "cda". */
const char* mf2_get_route(void);

/* Abandons the calling thread's heap now rather than at thread exit (a thread pool parking a
 * worker): its blocks stay valid. The thread's next allocation takes a heap again. */
void mf2_release_thread_heap(void);

/* The calling thread is about to be idle for a while (block on I/O, wait for work): it gives
 * back what its heap holds for speed, the free blocks in its per-thread caches, the frees into
 * other threads' pages it holds back, the empty pages it keeps, and processes the frees other
 * threads made into its pages, so that none of it pins memory while it waits. The background
 * reclaimer does the same for an idle thread once a page of it comes back whole, or once it has
 * taken no allocation slow path for MF2_IDLE_FLUSH_US (1 s) in a multi-threaded process (without
 * membarrier, never); calling this does it at once, whatever comes back. The heap stays the
 * thread's; its next allocations refill the caches. Cheap to call when there is nothing to give
 * back. */
void mf2_thread_idle(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MF2_MF2_H_ */
