"""Build conventions for MF2's own code.

Every MF2 target goes through these macros so that one place decides the language level (carried
by each target, so a workspace that depends on @mf2 needs no flags of ours), the warnings (errors
for our own builds only, never for third-party code nor for a user's build of @mf2), the TSan
suppressions file every test carries, and how a fuzz target becomes both a libFuzzer binary and a
corpus-replay test.
"""

# What our sources need in any build, ours or a user's.
_LANGUAGE = ["-std=c++17"]

# Warnings as errors, only where `--define=mf2_strict=1` is set: our .bazelrc sets it together with
# clang. A user's build of @mf2 (gcc rejects -Wthread-safety; a newer compiler may warn where ours
# does not) sees none of these.
_STRICT_WARNINGS = [
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wthread-safety",
    "-Wshadow",
    "-Wno-unused-parameter",
    "-Wno-missing-field-initializers",
]

MF2_COPTS = _LANGUAGE + select({
    "//tools:strict": _STRICT_WARNINGS,
    "//conditions:default": [],
})

# Our code is optimised lightly outside -c opt (sanitizer runs and stress tests stay fast);
# -c opt keeps the toolchain's -O2.
_OPT = select({
    "//tools:opt": [],
    "//conditions:default": ["-O1"],
})

_TEST_DATA = ["//tsan:tsan_suppressions.txt"]

def mf2_cc_library(name, copts = [], **kwargs):
    native.cc_library(name = name, copts = MF2_COPTS + _OPT + copts, **kwargs)

def mf2_cc_binary(name, copts = [], **kwargs):
    native.cc_binary(name = name, copts = MF2_COPTS + _OPT + copts, **kwargs)

def mf2_cc_test(name, copts = [], data = [], deps = [], gtest = True, **kwargs):
    """A cc_test with MF2's warnings, linked against gtest_main unless gtest = False."""
    native.cc_test(
        name = name,
        copts = MF2_COPTS + _OPT + copts,
        data = data + _TEST_DATA,
        deps = deps + (["@com_google_googletest//:gtest_main"] if gtest else []),
        **kwargs
    )

def mf2_cc_fuzz(name, srcs, corpus, deps = [], copts = [], tags = [], **kwargs):
    """A fuzz target `name` and its corpus replay test `name_corpus_test`.

    `bazel run --config=fuzz //fuzz:NAME -- ARGS` runs libFuzzer. In every other configuration
    `name` is linked with a standalone driver that replays the files or folders given as arguments,
    so `bazel build //...` works everywhere. `name_corpus_test` replays the checked-in corpus
    (every file under `corpus`) with that driver in every configuration, so `bazel test //...`
    covers the corpora; an empty corpus fails the test.
    """
    corpus_files = native.glob([corpus + "/**"])
    driver = "//tools:fuzz_replay_main"
    native.cc_binary(
        name = name,
        srcs = srcs,
        copts = MF2_COPTS + _OPT + copts,
        deps = deps + select({
            "//tools:fuzz": [],
            "//conditions:default": [driver],
        }),
        linkopts = select({
            "//tools:fuzz": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
        tags = tags,
        **kwargs
    )
    native.cc_test(
        name = name + "_corpus_test",
        srcs = srcs,
        copts = MF2_COPTS + _OPT + copts,
        deps = deps + [driver],
        data = corpus_files + _TEST_DATA,
        args = ["$(location %s)" % f for f in corpus_files],
        tags = tags,
        **kwargs
    )
