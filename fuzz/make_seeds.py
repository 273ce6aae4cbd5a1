#!/usr/bin/env python3
"""Writes the hand-made seed schedules of fuzz/corpus/{heap_ops,multi_actor,threads}_fuzz.

Usage: bazel run //fuzz:make_seeds
   or: python3 fuzz/make_seeds.py [--tables FUZZ_TABLES] [--check] [CORPUS]

Each builder below mirrors one target's schedule encoding (documented at the top of its .cc file)
and keeps a shadow of the harness's live-block list, so seeds name blocks by label instead of by
index. Seed files are named seed_*; crash reproducers and fuzzer-found inputs kept in the same
folders are left alone (this script only rewrites seed_* files and the hand-made reproducers).

Sizes come from the real tables: fuzz_tables (fuzz/fuzz_tables.cc) prints every size class
(mf2/size_class.h) and the request of every size byte (fuzz_util.h SizeFromByte), and a seed asks
for a size by the byte that requests it. FUZZ_TABLES is that binary; without --tables the script
builds and runs it with `bazel run //fuzz:fuzz_tables`. CORPUS defaults to fuzz/corpus of the
workspace. --check writes nothing: it fails, naming the files, unless every seed it would write
is in CORPUS byte for byte and CORPUS holds no other seed_* file (//fuzz:seeds_test).
"""

import argparse
import os
import struct
import subprocess
import sys


class Tables:
    """fuzz_tables' output: the class sizes and every size byte's request."""

    def __init__(self, text):
        self.class_sizes = []  # class k's size at index k - 1
        self.byte_size = {}  # size byte -> request
        self.max_class_size = None
        for line in text.splitlines():
            words = line.split()
            if words[0] == "class":
                assert int(words[1]) == len(self.class_sizes) + 1, line
                self.class_sizes.append(int(words[2]))
            elif words[0] == "byte":
                self.byte_size[int(words[1])] = int(words[2])
            elif words[0] == "max_class_size":
                self.max_class_size = int(words[1])
        assert self.class_sizes and len(self.byte_size) == 256 and self.max_class_size, \
            "fuzz_tables printed no tables"

    def size_byte(self, size, first=0):
        """The first size byte >= `first` that requests exactly `size`."""
        for b in range(first, 256):
            if self.byte_size[b] == size:
                return b
        raise ValueError("no size byte requests %d bytes" % size)


TABLES = None  # set by main() before any seed is built


def exact(size):
    """The size byte that requests exactly `size` (a class size)."""
    assert size in TABLES.class_sizes, size
    return TABLES.size_byte(size)


def minus1(size):
    """The size byte that requests one byte less than class size `size`."""
    assert size in TABLES.class_sizes, size
    return TABLES.size_byte(size - 1)


def plus1(size):
    """The size byte that requests one byte more than class size `size` (the next class, or a
    large allocation above the largest)."""
    assert size in TABLES.class_sizes, size
    return TABLES.size_byte(size + 1)


def special(size):
    """The size byte among the special ones (past the class boundaries) that requests `size`."""
    return TABLES.size_byte(size, first=240)


def set_sizes(tables):
    """The size bytes the seeds use, from the tables."""
    global TABLES, S8K, S4K, S1K, S64, S512, S64K, ZERO, LARGE65K, LARGE100K, LARGE1M
    TABLES = tables
    S8K = exact(8192)  # 8 blocks per page: pages fill quickly
    S4K = exact(4096)  # 16 per page
    S1K = exact(1024)
    S64 = exact(64)
    S512 = exact(512)
    S64K = exact(65536)
    ZERO = special(0)
    LARGE65K = special(tables.max_class_size + 1)
    LARGE100K = special(100000)
    LARGE1M = special(1 << 20)


class Unknown:
    """Stands in the live list for the blocks a FILL leaves live (how many depends on the cache
    state, which the builders do not model): labels after it have no known index."""

    def __init__(self, owner):
        self.owner = owner


class Schedule:
    def __init__(self, header=b""):
        self.out = bytearray(header)
        self.live = []  # labels (and Unknown runs), in the harness's live-list order
        self.owner = {}  # label -> allocating actor

    def add(self, *bs):
        for b in bs:
            self.out.append(b & 0xFF)

    def u16(self, v):
        self.out += struct.pack("<H", v)

    def index(self, label):
        i = self.live.index(label)
        assert not any(isinstance(x, Unknown) for x in self.live[:i]), \
            "%s comes after a FILL's leftovers: its index is unknown" % label
        return i

    def take(self, label):
        i = self.index(label)
        del self.live[i]
        return i

    def labels(self, tag, count, actor=0):
        self.serial = getattr(self, "serial", 0) + 1  # labels are unique even if tags repeat
        names = ["%s%d#%d" % (tag, i, self.serial) for i in range(count)]
        self.live += names
        for n in names:
            self.owner[n] = actor
        return names

    def unknown_tail(self, actor=0):
        self.live.append(Unknown(actor))

    def drop_actor(self, actor):
        """Every block of `actor` freed (IDLE), its FILL leftovers included."""
        self.live = [x for x in self.live
                     if not (isinstance(x, Unknown) and x.owner == actor)
                     and not (not isinstance(x, Unknown) and self.owner[x] == actor)]


# ---- heap_ops_fuzz -----------------------------------------------------------------------------
class HeapOps(Schedule):
    def alloc(self, sb, tag="b"):
        self.add(0, sb)
        return self.labels(tag, 1)[0]

    def alloc_n(self, sb, count, tag):
        assert 1 <= count <= 64, "ALLOC_N allocates 1 + byte % 64 blocks"
        self.add(1, sb, count - 1)
        return self.labels(tag, count)

    def aligned(self, shift, sb, tag="al"):
        self.add(2, shift, sb)
        return self.labels(tag, 1)[0]

    def free(self, label):
        self.add(3)
        self.u16(self.take(label))

    def free_run(self, first, count):
        i = self.index(first)
        self.add(4)
        self.u16(i)
        self.add(count - 1)
        del self.live[i:i + count]

    def usable(self, label):
        self.add(5)
        self.u16(self.index(label))

    def exit(self):
        self.add(6)

    def misuse(self, kind, label=None):
        """heap_ops_fuzz.cc MISUSE: kinds 1, 3, 4 free `label` before the misuse; kind 5 frees
        it, writes into it, and the next allocation hands out another block (appended), after
        which the harness holds the written block again (appended too)."""
        self.add(7, kind)
        self.u16(self.index(label) if label is not None else 0)
        if kind % 6 in (1, 3, 4) and label is not None:
            self.take(label)  # freed (correctly) before the double free
        if kind % 6 == 5 and label is not None:
            self.take(label)
            self.labels("uafq", 1)
            self.labels("uafp", 1)

    def late(self, first, count, sb, tag="late"):
        """LATE: exit, `count` blocks from `first` freed after the exit hook, one allocated."""
        i = self.index(first)
        self.add(13)
        self.u16(i)
        self.add(count - 1, sb)
        del self.live[i:i + count]
        return self.labels(tag, 1)[0]

    def policy(self, cache_mb, retained):
        self.add(9, (cache_mb & 7) | (retained << 3))

    def cache(self, mode):
        """fuzz_util.h CacheBytesForMode: 0 default, 1 off, 2 small; the heap is taken anew."""
        self.add(10, mode)

    def fill(self, sb, overflow=False):
        self.add(11, sb, 1 if overflow else 0)
        self.unknown_tail()

    def flush(self):
        self.add(12)

    def alloc_oom(self, sb, tag="oom"):
        self.add(8, sb)
        # The allocation may fail (no live block) or succeed from a page the heap holds; only
        # used at the end of seeds so the shadow list does not matter afterwards.


def heap_ops_seeds():
    seeds = {}

    s = HeapOps()  # every class boundary: size - 1, size, size + 1
    for k, size in enumerate(TABLES.class_sizes, 1):
        for d, sb in ((0, minus1(size)), (80, exact(size)), (160, plus1(size))):
            s.alloc(sb, "c%d_%d_" % (k, d))
    for label in list(s.live)[::2]:
        s.usable(label)
        s.free(label)
    seeds["class_boundaries"] = s

    s = HeapOps()  # fill a page, free it all (empty non-active page goes back), refill
    a = s.alloc_n(S8K, 8, "a")
    b = s.alloc_n(S8K, 8, "b")
    s.free_run(a[0], 8)
    s.alloc_n(S8K, 4, "c")
    s.free_run(b[0], 8)
    seeds["fill_free_refill"] = s

    s = HeapOps()  # aligned allocations of every alignment up to 1 MiB, small and large
    for shift in range(0, 21):
        s.aligned(shift, S64, "x%d_" % shift)
        s.aligned(shift, plus1(4096), "y%d_" % shift)
    s.free_run(s.live[0], 10)
    seeds["aligned"] = s

    s = HeapOps()  # large allocations, zero-size, odd small sizes
    odd = [special(n) for n in (1, 8, 43, 78)]
    for sb in [ZERO, LARGE65K, LARGE100K, LARGE1M] + odd + [S64K, plus1(65536)]:
        s.alloc(sb, "l")
    s.usable(s.live[1])
    s.free(s.live[1])
    seeds["large_and_odd"] = s

    s = HeapOps()  # thread exit with live blocks, takeover by the next thread, local frees
    x = s.alloc_n(S1K, 40, "x")
    y = s.alloc_n(S64, 50, "y")
    s.free_run(x[5], 10)
    s.exit()
    s.alloc_n(S1K, 12, "z")
    s.free_run(y[0], 50)
    s.exit()
    s.exit()
    seeds["exit_takeover"] = s

    s = HeapOps()  # misuse in report mode: interior, double, foreign; nothing absorbed
    p = s.alloc_n(S8K, 3, "p")
    q = s.alloc_n(S64, 3, "q")
    big = s.alloc(LARGE100K, "big")
    s.misuse(0, p[1])
    s.misuse(0, q[0])
    s.misuse(1, p[0])
    s.misuse(1, q[2])
    s.misuse(1, big)
    s.misuse(2)
    s.alloc_n(S8K, 2, "r")
    seeds["misuse_report"] = s

    s = HeapOps()  # last block of a non-active page double freed: the page is gone
    a = s.alloc_n(S8K, 8, "a")
    s.alloc_n(S8K, 1, "b")
    s.free_run(a[0], 7)
    s.misuse(1, a[7])
    seeds["double_free_released_page"] = s

    s = HeapOps()  # out of memory: nullptr + ENOMEM, then recovery
    s.alloc_n(S4K, 3, "a")
    s.alloc_oom(S4K)
    s.alloc_oom(S512)
    s.alloc_oom(S8K)
    s.alloc(S512, "after")
    seeds["out_of_memory"] = s

    s = HeapOps()  # caches: fill, overflow (FreeToFullCache), thread exit with full caches
    a = s.alloc_n(S1K, 10, "a")
    s.free(a[2])
    s.fill(S64, overflow=True)       # 64 blocks of 64 B: the cache flushes its older half
    s.fill(S1K)                      # the 1 KiB cache full
    s.fill(S8K, overflow=True)
    s.fill(S64K)
    s.exit()                         # Abandon flushes every full cache back to the pages
    s.free(a[0])
    s.fill(S1K, overflow=True)
    s.exit()
    seeds["cache_fill_overflow_exit"] = s

    s = HeapOps()  # explicit flush, then reuse of the flushed blocks from the page
    a = s.alloc_n(S4K, 20, "a")
    s.free_run(a[4], 8)
    s.flush()
    b = s.alloc_n(S4K, 12, "b")
    s.free_run(a[0], 4)
    s.fill(S4K, overflow=True)
    s.flush()
    s.alloc_n(S512, 30, "c")
    s.flush()
    seeds["cache_flush_then_reuse"] = s

    s = HeapOps()  # the same frees under each cache policy: off, small, default
    xs = {mode: s.alloc_n(S512, 40, "x%d_" % mode) for mode in (1, 2, 0)}
    for mode in (1, 2, 0):
        s.cache(mode)
        s.free_run(xs[mode][3], 30)
        s.fill(S512, overflow=True)
        s.fill(S64, overflow=True)
        s.flush()
        s.exit()
    seeds["cache_policy_off_small_default"] = s

    s = HeapOps()  # out of memory with full caches: the slow path flushes them and retries
    s.alloc_n(S4K, 16, "a")
    s.fill(S4K)
    s.fill(S512)
    s.alloc_oom(S8K)
    s.alloc_oom(S4K)
    seeds["cache_full_out_of_memory"] = s

    s = HeapOps()  # frees and an allocation after the thread's exit hook (dead sentinel)
    a = s.alloc_n(S1K, 20, "a")
    b = s.alloc_n(S8K, 8, "b")       # one page of 8 blocks
    s.late(a[3], 4, S64)             # remote frees into the abandoned heap, a late 64 B block
    s.late(b[0], 4, S1K)
    s.late(b[4], 4, LARGE100K)       # the page of b came back whole through the sentinel
    c = s.alloc_n(S64, 10, "c")      # the next thread took the heap over
    s.free_run(c[0], 10)
    s.late(a[0], 3, S8K)
    s.exit()
    seeds["after_exit_frees_and_late_alloc"] = s

    s = HeapOps()  # misuse across threads and a use-after-free write, each reported
    p = s.alloc_n(S4K, 6, "p")
    q = s.alloc_n(S64, 6, "q")
    big = s.alloc(LARGE100K, "big")
    s.misuse(3, p[0])                # owner frees, a thread without a heap frees again
    s.misuse(3, big)
    s.misuse(4, q[1])                # remote free, its second free, the owner's free
    s.misuse(4, p[2])
    s.misuse(5, q[3])                # written after its free: popped, reported, not reused
    s.misuse(5, p[4])
    s.alloc_n(S64, 4, "r")
    seeds["misuse_cross_thread_and_uaf"] = s

    s = HeapOps()  # caching off: the written block is the active page's only free block
    s.cache(1)
    p = s.alloc_n(S4K, 5, "p")       # a page of 16 blocks, 5 carved
    s.misuse(5, p[2])
    s.alloc_n(S4K, 3, "r")
    seeds["uaf_write_page_free_list"] = s

    s = HeapOps()  # partial list reuse across classes
    a = s.alloc_n(S4K, 16, "a")
    b = s.alloc_n(S4K, 16, "b")
    s.free(a[3])
    s.free(a[9])
    s.alloc_n(S4K, 3, "c")
    c2 = s.alloc_n(S512, 20, "d")
    s.free_run(c2[2], 5)
    s.alloc_n(S512, 7, "e")
    seeds["partial_reuse"] = s
    return seeds


# ---- multi_actor_fuzz --------------------------------------------------------------------------
class Multi(Schedule):
    def __init__(self, actors, budget, cache=0):
        assert 2 <= actors <= 4 and 1 <= budget <= 8 and 0 <= cache <= 3
        config = next(b for b in range(256) if 2 + b % 3 == actors and 1 + (b // 3) % 8 == budget
                      and (b // 24) % 4 == cache)
        super().__init__(bytes([config]))
        self.in_flight = 0

    def op(self, actor, code, *args):
        self.add((actor << 4) | code, *args)

    def alloc(self, a, sb, tag):
        self.op(a, 0, sb)
        return self.labels(tag, 1, a)[0]

    def alloc_n(self, a, sb, count, tag):
        self.op(a, 1, sb, count - 1)
        return self.labels(tag, count, a)

    def fill(self, a, sb, overflow=False):
        self.op(a, 13, sb, 1 if overflow else 0)
        self.unknown_tail(a)

    def flush(self, a):
        self.op(a, 14)

    def idle(self, a, sb):
        """FILL, then the other actors free every block of a (no adoption in these seeds)."""
        self.op(a, 15, sb)
        self.drop_actor(a)

    def free(self, a, label):
        self.op(a, 2)
        self.u16(self.take(label))

    def remote1(self, a, label, wins):
        """Step 1 by actor `a` of `label` (on a page another actor owns). `wins`: whether this
        push takes the edge (then the page is in flight until step2)."""
        self.op(a, 3)
        self.u16(self.take(label))
        if wins:
            self.in_flight += 1

    def step2(self, idx=0):
        assert idx < self.in_flight
        self.op(0, 4, idx)
        self.in_flight -= 1

    def exit(self, a):
        self.op(a, 5)

    def start(self, a):
        self.op(a, 6)

    def late(self, a, tag="late"):
        """EXIT of an actor that has exited (LATE): the newest live block is freed through the
        dead sentinel and one block allocated (appended)."""
        self.op(a, 5)
        if self.live:
            assert not isinstance(self.live[-1], Unknown)
            self.live.pop()
        return self.labels(tag, 1, a)[0]

    def double_free(self, a):
        """START of a running actor (DOUBLE): the block freed last is freed again."""
        self.op(a, 6)

    def budget(self, b, cache=0):
        """b - 1: budget 1 + (b - 1) % 8, bit 3 tight memory; cache 1..3: the cache policy of
        heaps taken from now on (0 keeps it)."""
        self.op(0, 7, (b - 1) | (cache << 4))

    def free_page(self, a, labels):
        self.op(a, 8)
        self.u16(self.index(labels[0]))
        for l in labels:
            self.take(l)

    def remote1_page(self, a, labels):
        self.op(a, 9)
        self.u16(self.index(labels[0]))
        for l in labels:
            self.take(l)
        self.in_flight += 1

    def aligned(self, a, shift, sb, tag):
        self.op(a, 10, shift, sb)
        return self.labels(tag, 1, a)[0]

    def route(self, r):
        """fuzz_util.h FuzzPolicy: r % 4 = route_s, route_p (gates open), route_p (gates closed
        by bits 2..5), cda; bit 6 = no idle reclamation; bit 7 = owners idle for reclamation."""
        self.op(0, 11, r)

    def sweep(self, a, label):
        self.op(a, 12)
        self.u16(self.index(label))


ROUTE_S, ROUTE_P_OPEN, ROUTE_P_GATED, CDA = 0, 1, 2, 3
IDLE_OWNERS = 0x80


def adoption_seeds():
    """Route P, cda and idle reclamation (multi_actor_fuzz ops 11, 12)."""
    seeds = {}
    A, B, C = 0, 1, 2

    def owner_with_queued_pages(route, actors=2):
        s = Multi(actors, 8)
        s.route(route)
        pages = [s.alloc_n(A, S8K, 8, "a%d_" % i) for i in range(3)]  # 3 full pages
        s.alloc(A, S8K, "a_active")                                   # they are detached now
        s.alloc_n(B, S8K, 8, "b")                                      # B's own page is full
        for blocks in pages:
            s.remote1(B, blocks[0], wins=True)
            s.step2()
            s.free(B, blocks[1])
        return s, pages

    # Route P, gates open: B's slow path adopts one of A's full pages; A then frees a block of it
    # (a remote free now), and frees into its other queued pages (through the remote stack).
    s, pages = owner_with_queued_pages(ROUTE_P_OPEN)
    s.alloc_n(B, S8K, 3, "adopted")
    s.free(A, pages[0][2])
    s.free(A, pages[1][2])
    s.free(A, pages[2][2])
    s.alloc_n(B, S8K, 6, "more")
    s.alloc_n(A, S8K, 9, "a_more")
    seeds["route_p_adopts_from_idle_owner"] = s

    # Each Route P gate closed on its own (idle, pressure, min remote, first-refusal window).
    for bit, name in ((4, "idle"), (8, "pressure"), (16, "min_remote"), (32, "deadline")):
        s, pages = owner_with_queued_pages(ROUTE_P_GATED | bit)
        s.alloc_n(B, S8K, 3, "b2")
        s.alloc_n(A, S8K, 9, "a_more")
        seeds["route_p_gate_%s_closed" % name] = s

    # cda: three actors adopting from each other's queues at the start of every slow path.
    s, pages = owner_with_queued_pages(CDA, actors=3)
    s.alloc_n(C, S8K, 9, "c")
    s.alloc_n(B, S8K, 9, "b2")
    s.alloc_n(A, S8K, 9, "a2")
    seeds["cda_adopts_everything"] = s

    # Idle reclamation: B frees whole pages of an idle A (complete frees release them), with an
    # edge left in flight while another page comes back whole; then an explicit sweep.
    s = Multi(2, 8)
    s.route(ROUTE_S | IDLE_OWNERS)
    pages = [s.alloc_n(A, S8K, 8, "a%d_" % i) for i in range(3)]
    active = s.alloc(A, S8K, "a_active")
    s.free_page(B, pages[0])
    s.remote1(B, pages[1][0], wins=True)   # in flight: queued late
    for l in pages[1][1:]:
        s.free(B, l)                       # the last one completes the page before it is queued
    s.step2()
    s.sweep(B, active)
    s.free_page(B, pages[2])
    seeds["idle_owner_pages_reclaimed"] = s

    # The owner frees into its own detached page (under the flag, back to the partial list).
    s = Multi(2, 8)
    s.route(ROUTE_P_OPEN | IDLE_OWNERS)
    p = s.alloc_n(A, S8K, 8, "p")
    s.alloc(A, S8K, "a_active")
    s.free(A, p[0])
    s.remote1(B, p[1], wins=True)
    s.free(A, p[2])  # flag held by B's in-flight edge: through the remote stack
    s.step2()
    s.alloc_n(A, S8K, 9, "q")
    seeds["owner_frees_into_detached_page"] = s
    return seeds


def cache_seeds():
    """Per-thread caches (multi_actor_fuzz ops 13 FILL, 14 FLUSH, 15 IDLE)."""
    seeds = {}
    A, B, C = 0, 1, 2

    # Fill and overflow caches, remote frees into pages whose blocks sit in caches, an explicit
    # flush, then the owner exits with a full cache and another actor adopts its pages.
    s = Multi(2, 8)
    a = s.alloc_n(A, S1K, 20, "a")
    b = s.alloc_n(A, S8K, 6, "b")
    s.free(B, a[0])
    s.free(B, b[0])
    s.remote1(B, a[1], wins=False)   # the page was queued by the free above
    s.fill(A, S1K, overflow=True)
    s.fill(A, S8K)
    s.flush(A)
    s.fill(A, S8K)
    s.exit(A)                        # thread exit with a full cache
    s.alloc_n(B, S8K, 10, "c")       # adopts the exited heap's pages
    s.start(A)
    seeds["cache_fill_flush_exit"] = s

    # Idle flush: A fills its cache and goes idle; B and C free every block on A's pages (whole
    # pages are swept by the freer), then the background reclaimer's pass; A allocates again
    # from its cache.
    s = Multi(3, 8)
    s.route(ROUTE_S | IDLE_OWNERS)
    s.alloc_n(A, S8K, 24, "a")
    s.alloc_n(A, S512, 40, "m")
    s.alloc_n(B, S8K, 4, "b")
    s.idle(A, S8K)
    s.alloc_n(A, S8K, 10, "a2")
    s.idle(A, S512)
    seeds["cache_idle_flush"] = s

    # Idle flush while a remote free is in flight (its page is held by the winner); budget 6:
    # reclamation batch 1, so the other whole page is swept at once.
    s = Multi(2, 6)
    s.route(ROUTE_S | IDLE_OWNERS)
    a = s.alloc_n(A, S8K, 16, "a")
    s.remote1(B, a[3], wins=True)
    s.idle(A, S8K)
    s.step2()
    s.alloc_n(A, S8K, 9, "a2")
    seeds["cache_idle_flush_in_flight"] = s

    # Route P adoption of pages whose blocks sit in the owner's cache: the adopter takes the full
    # pages; the owner's cached blocks stay valid (handed out later, freed remotely).
    s = Multi(2, 8)
    s.route(ROUTE_P_OPEN | IDLE_OWNERS)
    pages = [s.alloc_n(A, S8K, 8, "p%d_" % i) for i in range(3)]
    s.alloc(A, S8K, "act")
    for blocks in pages:
        s.free(A, blocks[7])         # into A's cache: the pages stay full (detached)
        s.remote1(B, blocks[0], wins=True)
        s.step2()
    s.alloc_n(B, S8K, 12, "adopted")
    s.alloc_n(A, S8K, 4, "from_cache")
    s.flush(A)
    seeds["cache_blocks_of_adopted_pages"] = s

    # Small caches (config), policy switched off then on by BUDGET, mixed remote and local frees.
    s = Multi(3, 4, cache=2)
    x = s.alloc_n(A, S64, 32, "x")
    y = s.alloc_n(B, S4K, 12, "y")
    for l in x[::2]:
        s.free(C, l)
    for l in y[:6]:
        s.free(B, l)
    s.fill(A, S64, overflow=True)
    s.budget(4, cache=1)             # caches off for heaps taken from now on
    s.exit(B)
    s.start(B)
    s.alloc_n(B, S4K, 8, "z")
    s.budget(4, cache=3)
    s.exit(C)
    s.start(C)
    s.fill(C, S4K, overflow=True)
    seeds["cache_small_policy_switches"] = s
    return seeds


def multi_actor_seeds():
    seeds = {}
    A, B, C, D = 0, 1, 2, 3

    # Remote frees on the owner's active page while it keeps allocating from it: the page is
    # queued while active; the owner's slow path pops it and keeps it active.
    s = Multi(2, 8)
    p = s.alloc_n(A, S8K, 4, "p")
    s.remote1(B, p[0], wins=True)
    s.step2()
    s.remote1(B, p[1], wins=False)  # flag already set: piles onto the queued page
    s.alloc_n(A, S8K, 6, "q")       # fills the page, then the gate drains it
    s.alloc_n(A, S8K, 3, "r")
    seeds["remote_free_on_active_page"] = s

    # Edge won but the page queued late: the owner collects the block straight off its active
    # page (flag kept), reuses it, even takes new pages, before step 2 queues the page.
    s = Multi(2, 8)
    p = s.alloc_n(A, S8K, 8, "p")
    s.remote1(B, p[3], wins=True)
    s.remote1(B, p[5], wins=False)
    s.alloc_n(A, S8K, 2, "x")  # CollectActive: both reused while the page is flagged, unqueued
    s.alloc_n(A, S8K, 9, "y")  # new page
    s.free(A, p[0])            # local frees on the flagged page
    s.free(A, p[1])
    s.step2()                  # now the page is queued (its remote stack may be empty)
    s.alloc_n(A, S8K, 10, "z")
    seeds["edge_won_page_queued_late"] = s

    # Same, but the owner drains its queue (other pages) between step 1 and step 2.
    s = Multi(3, 2)
    p = s.alloc_n(A, S8K, 8, "p")
    o = s.alloc_n(A, S4K, 3, "o")
    m = s.alloc_n(A, S512, 3, "m")
    s.remote1(B, p[2], wins=True)
    s.free(C, o[0])
    s.free(C, m[0])
    s.alloc_n(A, S4K, 20, "a4")
    s.alloc_n(A, S8K, 3, "a8")
    s.step2()
    s.alloc_n(A, S8K, 12, "b8")
    seeds["step2_after_owner_drain"] = s

    # Owner exits with remote frees in flight: step 2 finds a dead owner and drains for it.
    s = Multi(2, 8)
    p = s.alloc_n(A, S8K, 8, "p")
    q = s.alloc_n(A, S4K, 5, "q")
    s.remote1(B, p[0], wins=True)
    s.remote1(B, q[0], wins=True)
    s.remote1(B, p[1], wins=False)
    s.exit(A)
    s.step2(1)
    s.step2(0)
    for l in list(p[2:]):
        s.free(B, l)  # every free lands on a dead owner's page; the page goes back
    seeds["owner_exit_with_in_flight"] = s

    # Regression (found by Larson at 4 threads, -c opt): an exiting owner drains its queue and
    # releases pages whose segments are then unmapped (tight-memory policy: no spares, no span
    # cache, no retained segments); the drain loop must never touch a released page.
    s = Multi(2, 8)
    s.budget(16)               # op byte 15: budget 8, tight-memory bit set
    p = s.alloc_n(A, S64K, 31, "p")  # 8-slice spans: 4 pages, most of a segment
    q = s.alloc_n(A, S64K, 31, "q")  # and a second segment
    for l in list(p) + list(q):
        s.free(B, l)           # complete remote frees: every page queued on A, all empty
    s.exit(A)                  # Abandon drains the queue, releasing and unmapping
    s.start(A)
    s.alloc_n(A, S64K, 3, "r")
    seeds["exit_drain_unmaps_segments"] = s

    # Owner exits with a free in flight, a new thread takes the heap over before step 2.
    s = Multi(3, 8)
    p = s.alloc_n(A, S8K, 8, "p")
    s.remote1(B, p[4], wins=True)
    s.exit(A)
    s.start(A)  # A's slot takes the idle heap over whole (a new thread)
    s.step2()
    s.alloc_n(C, S8K, 4, "c")
    s.free(B, p[0])
    seeds["exit_takeover_before_step2"] = s

    # Adoption: a live thread's slow path adopts an exited thread's partial page; remote frees
    # of the adopted page's blocks then become local.
    s = Multi(2, 8)
    p = s.alloc_n(A, S8K, 3, "p")
    s.exit(A)
    s.alloc_n(B, S8K, 4, "b")  # adopts A's page
    s.free(B, p[0])            # now local
    s.free(B, p[1])
    s.alloc(B, S8K, "c")
    s.start(A)
    s.free(A, p[2])            # remote into B
    seeds["adopt_exited_page"] = s

    # Adoption refused while a won push holds the page's flag: AdoptPartial skips it, step 2 then
    # queues it on the dead owner and the freer drains it.
    s = Multi(2, 8)
    p = s.alloc_n(A, S8K, 3, "p")
    s.remote1(B, p[0], wins=True)
    s.exit(A)
    s.alloc_n(B, S8K, 2, "b")  # the flagged page cannot be adopted: new page
    s.step2()
    s.alloc_n(B, S8K, 8, "c")
    s.free(B, p[1])
    seeds["adopt_refused_while_in_flight"] = s

    # Budget exhaustion: budget 1, the wanted page queued first (popped last); the gate keeps
    # draining past the budget before it would take a new page.
    s = Multi(2, 1)
    mine = s.alloc_n(A, S8K, 8, "mine")
    act = s.alloc_n(A, S8K, 8, "act")  # `mine` is no longer active
    o1 = s.alloc(A, S64, "o1")
    o2 = s.alloc(A, S512, "o2")
    o3 = s.alloc(A, S4K, "o3")
    s.free(B, mine[0])
    s.free(B, o1)
    s.free(B, o2)
    s.free(B, o3)
    s.alloc_n(A, S8K, 2, "n")
    s.budget(3)
    s.free(B, act[1])
    s.free(B, mine[2])
    s.alloc_n(A, S8K, 3, "n2")
    seeds["budget_exhaustion"] = s

    # A whole page freed remotely in one burst: the first push wins, the rest pile up; then the
    # owner exits before step 2 and the drain empties and releases the page.
    s = Multi(2, 4)
    p = s.alloc_n(A, S8K, 8, "p")
    s.alloc_n(A, S8K, 1, "next")  # p's page is no longer active
    s.remote1_page(B, p)
    s.exit(A)
    s.step2()
    s.start(A)
    seeds["remote_page_then_exit"] = s

    # Several pages in flight at once, completed in reverse order, four actors.
    s = Multi(4, 8)
    a = s.alloc_n(A, S8K, 8, "a")
    b = s.alloc_n(B, S8K, 8, "b")
    c = s.alloc_n(C, S4K, 6, "c")
    s.remote1(D, a[0], wins=True)
    s.remote1(D, b[0], wins=True)
    s.remote1(A, c[0], wins=True)
    s.remote1(C, a[1], wins=False)
    s.free_page(B, b[1:])  # local frees next to the in-flight one
    s.step2(2)
    s.alloc_n(A, S8K, 3, "a2")
    s.step2(1)
    s.exit(B)
    s.step2(0)
    s.alloc_n(C, S4K, 12, "c2")
    s.alloc_n(D, S8K, 2, "d2")
    s.start(B)
    seeds["many_in_flight_four_actors"] = s

    # Mixed sizes, alignment, large blocks across actors.
    s = Multi(3, 5)
    s.aligned(A, 12, S64, "al")
    big = s.alloc(A, LARGE100K, "big")
    x = s.alloc_n(B, S64, 30, "x")
    s.alloc(C, ZERO, "z")
    s.free(C, big)
    for l in x[::3]:
        s.remote1(A, l, wins=(l == x[0]))
    s.step2()
    s.alloc_n(B, S64, 40, "y")
    seeds["mixed_sizes"] = s
    seeds.update(adoption_seeds())
    seeds.update(cache_seeds())
    # After the exit hook: an exited actor's thread frees (the remote way, without a heap) and
    # allocates (a heap taken and released at once), into its own abandoned heap and others'.
    s = Multi(3, 4)
    p = s.alloc_n(A, S8K, 6, "p")
    q = s.alloc_n(B, S64, 5, "q")
    s.exit(A)
    s.late(A)                       # frees q[4] (B's page), allocates from an idle heap
    s.late(A)                       # frees its own late block
    s.free(B, p[0])
    s.late(A)
    s.alloc_n(C, S1K, 4, "r")
    s.start(A)                      # takes a heap: maybe the one its late allocation left
    s.alloc_n(A, S8K, 3, "t")
    seeds["after_exit_frees_and_late_allocs"] = s

    # Double frees by the owner and from other heaps, wherever the first free put the block:
    # the owner's cache, another heap's held chain, a remote stack in flight, the page's list.
    s = Multi(3, 8)
    a = s.alloc_n(A, S1K, 10, "a")
    s.free(A, a[2])                 # into A's cache
    s.double_free(B)                # B frees it again: reported
    s.double_free(A)                # and A: reported
    s.free(B, a[3])                 # held in B's remote chain
    s.double_free(A)
    s.double_free(C)
    s.remote1(B, a[5], wins=True)   # on the page's remote stack, step 2 pending
    s.double_free(A)
    s.step2()
    s.double_free(C)
    s.free(A, a[6])
    s.flush(A)                      # on the page's free list
    s.double_free(C)
    s.double_free(A)
    s.alloc_n(A, S1K, 4, "b")
    seeds["double_free_owner_and_other_heaps"] = s

    return seeds


# ---- threads_fuzz ------------------------------------------------------------------------------
class Threads(Schedule):
    def __init__(self, workers, budget, cache=0):
        config = next(b for b in range(256) if 2 + b % 2 == workers and 1 + (b // 2) % 8 == budget
                      and (b // 16) % 4 == cache)
        super().__init__(bytes([config]))
        self.workers = workers
        self.stopped = set()

    def op(self, w, code, *args):
        self.add((w << 4) | code, *args)

    def alloc(self, w, sb, count, tag):
        self.op(w, 0, sb, count - 1)
        return self.labels(tag, count, w)

    def fill(self, w, sb, overflow=False):
        self.op(w, 6, sb, 1 if overflow else 0)
        self.unknown_tail(w)

    def flush(self, w):
        self.op(w, 7)

    def idle(self, w, sb):
        self.op(w, 8, sb)
        self.drop_actor(w)

    def free(self, w, label):
        self.op(w, 1)
        self.u16(self.take(label))

    def exit(self, w):
        self.op(w, 2)
        self.stopped.add(w)

    def start(self, w):
        self.op(w, 5)
        self.stopped.discard(w)

    def late(self, w, tag="late"):
        """EXIT of a worker that has exited (LATE): a thread without a heap frees the newest live
        block and allocates one (appended)."""
        assert w in self.stopped
        self.op(w, 2)
        if self.live:
            assert not isinstance(self.live[-1], Unknown)
            self.live.pop()
        return self.labels(tag, 1, w)[0]

    def burst(self, count, tag):
        assert not any(isinstance(x, Unknown) for x in self.live), "BURST after FILL leftovers"
        self.op(0, 3, count)
        running = [w for w in range(self.workers) if w not in self.stopped]
        n = len(running)
        self.live = [l for i, l in enumerate(self.live) if i % (2 * n) >= n]
        if count % 16:
            for r, w in enumerate(running):
                self.labels("%s_w%d_" % (tag, w), count % 16, w)

    def budget(self, b, route=0, cache=0):
        self.op(0, 4, (b - 1) | (cache << 3), route)


def threads_seeds():
    seeds = {}

    s = Threads(2, 8)  # cross-thread frees onto the owner's active page
    a = s.alloc(0, S8K, 4, "a")
    s.free(1, a[0])
    s.free(1, a[1])
    s.alloc(0, S8K, 8, "b")
    seeds["remote_on_active"] = s

    s = Threads(3, 8)  # thread exit with live blocks; the others free into the dead heap
    a = s.alloc(0, S8K, 8, "a")
    b = s.alloc(0, S4K, 5, "b")
    s.exit(0)
    for l in a[:4]:
        s.free(1, l)
    for l in b:
        s.free(2, l)
    s.start(0)  # takes the idle heap over whole
    s.alloc(0, S8K, 3, "c")
    seeds["exit_with_live_blocks"] = s

    s = Threads(2, 8)  # adoption of an exited thread's page by a live thread
    a = s.alloc(0, S8K, 3, "a")
    s.exit(0)
    s.alloc(1, S8K, 4, "b")  # adopts the exited thread's page
    s.free(1, a[0])
    s.start(0)
    s.free(0, a[1])
    seeds["adopt"] = s

    s = Threads(3, 1)  # budget 1 with several queued pages
    m = s.alloc(0, S8K, 8, "m")
    s.alloc(0, S8K, 8, "n")
    o = s.alloc(0, S64, 2, "o")
    p = s.alloc(0, S512, 2, "p")
    s.free(1, m[0])
    s.free(2, o[0])
    s.free(1, p[0])
    s.alloc(0, S8K, 2, "q")
    seeds["budget_exhaustion"] = s

    s = Threads(3, 8)  # concurrent bursts: remote frees of all owners at once
    s.alloc(0, S1K, 16, "a")
    s.alloc(1, S64, 16, "b")
    s.alloc(2, S8K, 16, "c")
    s.burst(8, "x")
    s.burst(4, "y")
    s.burst(0, "z")
    s.exit(1)
    s.burst(15, "w")
    s.start(1)
    s.burst(5, "v")
    seeds["bursts"] = s

    s = Threads(2, 4)  # exits and restarts under load
    for r in range(4):
        s.alloc(r % 2, S4K, 10, "r%d" % r)
        s.burst(3, "b%d" % r)
        s.exit(r % 2)
        s.start(r % 2)
    seeds["churn"] = s

    s = Threads(2, 8)  # large and odd sizes across threads
    big = s.alloc(0, LARGE1M, 2, "big")
    z = s.alloc(1, ZERO, 3, "z")
    s.free(1, big[0])
    s.free(0, z[1])
    s.alloc(1, S64K, 9, "k")
    s.burst(2, "q")
    seeds["large_and_odd"] = s

    s = Threads(3, 2)  # a whole page freed by another thread, then the owner exits
    a = s.alloc(0, S8K, 8, "a")
    s.alloc(0, S8K, 1, "n")
    for l in a:
        s.free(2, l)
    s.exit(0)
    s.budget(7)
    s.alloc(1, S8K, 9, "c")
    s.start(0)
    seeds["page_freed_remotely_then_exit"] = s

    # Route P (gates open) and idle reclamation with real threads: worker 1 adopts worker 0's
    # full pages while worker 0 frees into them, in bursts.
    s = Threads(3, 8)
    s.budget(8, 1 | 0x80)
    a = s.alloc(0, S8K, 15, "a")
    s.alloc(1, S8K, 8, "b")
    for l in a[:8:2]:
        s.free(2, l)
    s.burst(8, "q")
    s.alloc(1, S8K, 12, "c")
    s.burst(3, "r")
    seeds["route_p_adoption_with_threads"] = s

    s = Threads(3, 8)  # caches: fill, overflow, thread exit with full caches
    a = s.alloc(0, S1K, 12, "a")
    s.free(1, a[0])
    s.fill(0, S1K, overflow=True)
    s.fill(0, S64)
    s.fill(1, S8K, overflow=True)
    s.exit(0)                    # thread exit with full caches
    s.free(2, a[1])
    s.start(0)
    s.flush(1)
    seeds["cache_fill_exit"] = s

    s = Threads(3, 8)  # idle flush: two workers free an idle owner's pages at once
    s.budget(8, 0x80)
    s.alloc(0, S8K, 15, "a")
    s.alloc(0, S8K, 15, "b")
    s.alloc(0, S512, 15, "c")
    s.alloc(1, S4K, 6, "d")
    s.idle(0, S8K)
    s.alloc(0, S8K, 12, "e")
    s.idle(0, S512)
    seeds["cache_idle_flush"] = s

    s = Threads(2, 4, cache=2)  # small caches under bursts and flushes
    s.alloc(0, S64, 15, "a")
    s.alloc(1, S1K, 15, "b")
    s.burst(9, "x")
    s.flush(0)
    s.burst(4, "y")
    s.budget(4, 0, cache=1)      # caches off for threads started from now on
    s.exit(1)
    s.start(1)
    s.burst(7, "z")
    seeds["cache_small_bursts"] = s

    # A block in an owner's cache whose page another worker adopts (cda, ungated): the owner's
    # next allocation hands it out, from a page it no longer owns (valid: page.h). Found by
    # libFuzzer as an oracle failure of the harness, which expected every new block on a page of
    # the allocating heap.
    s = Threads(2, 8)
    s.budget(8, CDA)
    p = s.alloc(1, S8K, 8, "p")      # a full page of worker 1
    s.alloc(1, S8K, 1, "x")          # the next page: p's page is detached (adoptable)
    s.free(1, p[7])                  # into worker 1's cache; the page stays full
    s.free(0, p[0])                  # remote: the page is queued on worker 1
    s.alloc(0, S8K, 1, "y")          # cda: worker 0 adopts the page
    s.alloc(1, S8K, 1, "z")          # worker 1's cache hands out p[7]
    seeds["cache_cached_block_of_adopted_page"] = s

    s = Threads(2, 4)  # cda between two threads
    s.budget(4, 3)
    a = s.alloc(0, S4K, 15, "a")
    for l in a[:10]:
        s.free(1, l)
    s.alloc(1, S4K, 15, "b")
    s.burst(9, "q")
    seeds["cda_with_threads"] = s
    s = Threads(3, 8)  # a real thread after its exit hook frees and allocates without a heap
    a = s.alloc(0, S8K, 6, "a")
    b = s.alloc(1, S64, 4, "b")
    s.exit(0)
    s.late(0)                       # b[3]: a remote free into a live owner's page
    s.late(0)                       # its own late block
    s.free(1, a[0])
    s.start(0)
    s.alloc(0, S1K, 3, "c")
    s.exit(2)
    s.late(2)
    seeds["after_exit_frees_and_late_allocs"] = s

    return seeds


def heap_ops_reproducers():
    """Hand-made reproducers of allocator bugs found by fuzzing (kept as crash_* files)."""
    repros = {}
    # ASan builds: a 4 MiB segment is munmapped (more than Policy::retained_segments empty
    # segments) while its range is still poisoned in ASan's shadow (Retire/InitForClass poison
    # spans; MaybeUnmap does not unpoison). The next mapping the kernel places there, here a large
    # allocation, is reported as use-after-poison when the program writes to it. Found by
    # heap_ops_fuzz after ~2,700 iterations (default policy); this schedule: no span cache and no
    # retained segments, 44 MiB of 64 KiB blocks freed (11 segments unmapped), then large
    # allocations, which the kernel places in the unmapped ranges.
    s = HeapOps()
    s.policy(0, 0)  # no span cache, no retained empty segment: every empty segment is unmapped
    for i in range(11):
        s.alloc_n(S64K, 64, "k%d_" % i)
    for i in range(11):
        s.free_run(s.live[0], 64)
    s.alloc_n(LARGE1M, 40, "big")  # enough mappings to reach down into the unmapped ranges
    repros["crash_segment_unmap_keeps_asan_poison"] = s

    # A freed large block's record outlived its address range: large.cc remembers the last 64
    # freed large blocks (a second free of one is a double free), and forgot one only when a new
    # large block covered it. A segment mapped over an unmapped large block's range left the
    # record, so a double free of a class block at that address, after its segment was unmapped
    # again, was reported as a double free of a large block that no longer existed, instead of
    # a foreign pointer. Found by heap_ops_fuzz in CI. This schedule: caching off, no span cache
    # and no retained segments; the large-mapping cache filled (16 mappings), so that twelve
    # 1 MiB blocks (1 MiB aligned: slice starts) are unmapped and remembered; 64 KiB blocks then
    # take segments the kernel places over those ranges; every 64 KiB block of the second
    # segment but one is freed, and the last one twice (its segment unmapped by the first free).
    s = HeapOps()
    s.cache(1)      # caching off: the first free releases the page
    s.policy(0, 0)  # no span cache, no retained empty segment: the segment is unmapped with it
    fill = s.alloc_n(LARGE100K, 16, "fill")
    s.free_run(fill[0], 16)  # 16 mappings kept: the large-mapping cache is full
    s.alloc_n(minus1(61440), 33, "c")  # 4 full pages and one block of the 60 KiB class
    big = [s.aligned(20, LARGE1M, "big%d_" % i) for i in range(12)]
    for label in big:
        s.free(label)  # unmapped (the cache is full) and remembered
    # 2 spans in the first segment, 7 in the second, 1 in a third (ALLOC_N takes at most 64)
    d = s.alloc_n(S64K, 64, "d") + s.alloc_n(S64K, 9, "e")
    for label in reversed(s.live[:32]):
        s.free(label)  # the 60 KiB pages go back, retained by the heap
    target = d[16 + 15]
    for label in reversed(d[16:72]):
        if label != target:
            s.free(label)
    s.misuse(1, target)  # the owner's double free: its segment is unmapped by the first free
    repros["crash_freed_large_record_outlives_its_range"] = s
    return repros


def without_caches(target, seeds):
    """The same schedules with caching off (fuzz_util.h CacheBytesForMode mode 1): heap_ops takes
    a CACHE op first; the others carry the mode in their config byte."""
    out = {}
    for name, s in seeds.items():
        if name.startswith("cache_"):
            continue
        b = bytes(s.out)
        if target == "heap_ops_fuzz":
            data = bytes([10, 1]) + b
        elif target == "multi_actor_fuzz":
            c = b[0]
            assert c < 24
            data = bytes([c + 24]) + b[1:]
        else:
            c = b[0]
            assert c < 16
            data = bytes([c + 16]) + b[1:]
        out["nocache_" + name] = data
    return out


def run_tables(binary):
    """fuzz_tables' output: from `binary`, else built and run by Bazel in the workspace."""
    if binary:
        return subprocess.run([binary], check=True, stdout=subprocess.PIPE, text=True).stdout
    workspace = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run(["bazel", "run", "--ui_event_filters=-info", "--noshow_progress",
                           "//fuzz:fuzz_tables"], cwd=workspace, check=True,
                          stdout=subprocess.PIPE, text=True).stdout


def all_files():
    """{target: {file name: bytes}}: every seed (and hand-made reproducer) this script writes."""
    out = {}
    for target, seeds in (("heap_ops_fuzz", heap_ops_seeds()),
                          ("multi_actor_fuzz", multi_actor_seeds()),
                          ("threads_fuzz", threads_seeds())):
        files = {"seed_" + name: bytes(s.out) for name, s in seeds.items()}
        files.update({"seed_" + name: data for name, data in without_caches(target, seeds).items()})
        out[target] = files
    out["heap_ops_fuzz"].update({name: bytes(s.out) for name, s in heap_ops_reproducers().items()})
    return out


def write(root, files):
    for target, by_name in files.items():
        d = os.path.join(root, target)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            if f.startswith("seed_"):
                os.remove(os.path.join(d, f))
        for name, data in by_name.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        print("%s: %d seeds" % (target, sum(n.startswith("seed_") for n in by_name)))


def check(root, files):
    """The names of the files in `root` that differ from `files`, or are missing, or extra."""
    bad = []
    for target, by_name in files.items():
        d = os.path.join(root, target)
        present = set(os.listdir(d)) if os.path.isdir(d) else set()
        for name, data in sorted(by_name.items()):
            path = os.path.join(d, name)
            if name not in present:
                bad.append("%s: missing" % path)
                continue
            with open(path, "rb") as f:
                if f.read() != data:
                    bad.append("%s: differs from what the builders write" % path)
        for name in sorted(present):
            if name.startswith("seed_") and name not in by_name:
                bad.append("%s: no builder writes it" % os.path.join(d, name))
    return bad


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", help="the fuzz_tables binary (default: bazel run)")
    parser.add_argument("--check", action="store_true",
                        help="compare with CORPUS instead of writing it")
    parser.add_argument("corpus", nargs="?", help="the corpus folder (default: fuzz/corpus)")
    args = parser.parse_args()
    root = args.corpus
    if root is None:
        workspace = os.environ.get("BUILD_WORKSPACE_DIRECTORY")  # set by `bazel run`
        if workspace is None:
            workspace = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        root = os.path.join(workspace, "fuzz", "corpus")
    set_sizes(Tables(run_tables(args.tables)))
    files = all_files()
    if not args.check:
        write(root, files)
        return 0
    bad = check(root, files)
    for line in bad:
        print(line, file=sys.stderr)
    if bad:
        print("%d seed files are stale: run `bazel run //fuzz:make_seeds` and commit the corpus"
              % len(bad), file=sys.stderr)
        return 1
    print("%d seed files match the builders" % sum(len(v) for v in files.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
