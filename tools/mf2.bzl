"""Build conventions for MF2's own code.

Every MF2 target goes through these macros so that one place decides the language level (carried
by each target, so a workspace that depends on @mf2 needs no flags of ours), the warnings (errors
for our own builds only, never for third-party code nor for a user's build of @mf2), the TSan
suppressions file every test carries, and how a fuzz target becomes both a libFuzzer binary and a
corpus-replay test. It also holds the release version and the rule that packs the static library.
"""

load("@bazel_tools//tools/cpp:toolchain_utils.bzl", "find_cpp_toolchain")

# The release version. The shared library's SONAME carries its major number, and the install
# (tools/install.sh) checks that mf2/mf2.h's MF2_VERSION_MAJOR/MINOR/PATCH say the same.
MF2_VERSION = "0.4.0"
MF2_SONAME = "libmf2.so." + MF2_VERSION.split(".")[0]

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

# The allocator's own libraries (mf2/BUILD: the engine, the API, the malloc shim) use no C++
# runtime: no exceptions, no RTTI, no guarded function-local statics (mf2/base.h, StaticObject),
# and operator new reaches the new-handler and std::bad_alloc through weak references
# (mf2/malloc_shim.cc). So the shared library needs only libc, and a C program that preloads it
# maps no libstdc++. Tests and benchmarks keep both. Under --config=ubsan and --config=fuzz our
# objects keep RTTI (`--define=mf2_rtti=1`): UBSan's vptr check, compiled into the white-box tests
# and fuzz targets, needs the type_info of the classes they call.
MF2_NO_CXX_RUNTIME = [
    "-fno-exceptions",
    # std::bad_alloc from operator new, and whatever a new-handler throws, unwind through our
    # frames: keep their unwind tables (the x86-64 default) on every target.
    "-funwind-tables",
] + select({
    "//tools:rtti": [],
    "//conditions:default": ["-fno-rtti"],
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

def _mf2_static_archive_impl(ctx):
    """Packs the objects of `deps` (this repository's only) into one relocatable object in `out`.

    One member (`ld -r` of every object) rather than one per source file: a program that links the
    archive and calls malloc pulls in all of MF2, including the fork handlers that nothing names
    (mf2/fork.cc registers them from a constructor), so no --whole-archive is needed. PIC objects,
    so the archive links into position-independent executables (Debian's gcc default) and into
    shared libraries. Another repository contributing objects fails the build: the archive must
    need nothing but the C and C++ runtimes (Abseil is used for its headers only).
    """
    cc_toolchain = find_cpp_toolchain(ctx)
    objects = []
    link_flags = []
    for dep in ctx.attr.deps:
        for linker_input in dep[CcInfo].linking_context.linker_inputs.to_list():
            for flag in linker_input.user_link_flags:
                if flag not in link_flags:
                    link_flags.append(flag)
            for library in linker_input.libraries:
                objs = library.pic_objects or library.objects
                if not objs:
                    continue
                if linker_input.owner.workspace_name != ctx.label.workspace_name:
                    fail("%s: %s contributes object files (%s); libmf2.a must not need it" %
                         (ctx.label, linker_input.owner, objs[0].short_path))
                for obj in objs:
                    if obj not in objects:
                        objects.append(obj)
    if not objects:
        fail("%s: no object files in %s" % (ctx.label, ctx.attr.deps))
    relocatable = ctx.actions.declare_file(ctx.label.name + ".o")
    ctx.actions.run_shell(
        inputs = depset(objects, transitive = [cc_toolchain.all_files]),
        outputs = [ctx.outputs.out, relocatable],
        command = '"$1" -r -o "$2" "${@:5}" && rm -f "$4" && "$3" rcsD "$4" "$2"',
        arguments = [cc_toolchain.ld_executable, relocatable.path, cc_toolchain.ar_executable,
                     ctx.outputs.out.path] + [o.path for o in objects],
        mnemonic = "Mf2StaticArchive",
        progress_message = "Packing %s" % ctx.outputs.out.short_path,
    )
    ctx.actions.write(ctx.outputs.link_flags, "\n".join(link_flags) + "\n")
    return [DefaultInfo(files = depset([ctx.outputs.out, ctx.outputs.link_flags]))]

mf2_static_archive = rule(
    implementation = _mf2_static_archive_impl,
    doc = "A self-contained static library (one relocatable object) of `deps`; see the impl.",
    attrs = {
        "deps": attr.label_list(providers = [CcInfo]),
        "out": attr.output(mandatory = True, doc = "the archive, e.g. libmf2.a"),
        "link_flags": attr.output(
            mandatory = True,
            doc = "the deps' linkopts, one a line (what a static link of the archive also needs)",
        ),
        "_cc_toolchain": attr.label(default = "@bazel_tools//tools/cpp:current_cc_toolchain"),
    },
    fragments = ["cpp"],
    toolchains = ["@bazel_tools//tools/cpp:toolchain_type"],
)
