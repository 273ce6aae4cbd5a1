"""The external repositories @mf2 needs, declared for a workspace that depends on MF2.

A user's WORKSPACE needs two steps (examples/bazel/WORKSPACE is a tested one):

    local_repository(name = "mf2", path = "/path/to/mf2")      # or http_archive, git_repository
    load("@mf2//:mf2_deps.bzl", "mf2_dependencies")
    mf2_dependencies()

then `deps = ["@mf2//mf2"]` (the API, mf2/mf2.h) or `deps = ["@mf2//mf2:malloc"]` (MF2 becomes the
program's malloc). @mf2's targets carry what they need (-std=c++17 on their own compiles) and no
warning flags: -Werror and clang's -Wthread-safety are set only by MF2's own .bazelrc.

Each repository is declared only if the workspace has not declared one of that name already, so
a workspace that brings its own Abseil, GoogleTest or rules keeps them. The defaults point where
MF2's `tools/bootstrap.sh` installs them from Debian's archive (offline machines with Debian's
Bazel 4.2.3, like MF2's own WORKSPACE):

    @com_google_absl        Abseil sources (only absl/base:core_headers is used: header-only)
    @com_google_googletest  GoogleTest sources (only @mf2's own tests use it)
    @rules_cc, @rules_java, @platforms, @bazel_skylib    what Bazel 4.2.3 itself loads
    @remote_coverage_tools  empty stand-ins that every `bazel test` asks for

With network access and a Bazel that fetches its own rules, pass `offline = False` to declare
only the libraries.
"""

def _empty_coverage_tools_impl(repository_ctx):
    repository_ctx.file("WORKSPACE", 'workspace(name = "%s")\n' % repository_ctx.name)
    repository_ctx.file("BUILD", "\n".join([
        "# Stand-ins for the coverage tools Bazel references from every test rule (unused).",
        'package(default_visibility = ["//visibility:public"])',
        'filegroup(name = "coverage_report_generator")',
        'filegroup(name = "lcov_merger")',
        "",
    ]))

_empty_coverage_tools = repository_rule(implementation = _empty_coverage_tools_impl)

def _maybe(rule, name, **kwargs):
    if not native.existing_rule(name):
        rule(name = name, **kwargs)

def mf2_dependencies(
        offline = True,
        deps_dir = "/opt/mf2-deps",
        googletest_dir = "/usr/src/googletest",
        bazel_mock_repos = "/usr/src/bazel-bootstrap/mock_repos",
        bazel_tools_dir = "/usr/share/bazel/tools"):
    """Declares every repository @mf2 needs that the workspace has not declared.

    Args:
      offline: also declare Bazel's own rule repositories from Debian's packages (for Debian's
        Bazel 4.2.3 without network); False leaves them to Bazel.
      deps_dir: where tools/bootstrap.sh put the Abseil sources (deps_dir/abseil-cpp); the same
        variable is MF2_DEPS there.
      googletest_dir: GoogleTest sources (Debian package `googletest`).
      bazel_mock_repos: rules_cc/rules_java stand-ins for Bazel 4.x (`bazel-bootstrap-source`).
      bazel_tools_dir: Debian's `bazel-platforms` and `bazel-skylib`.
    """
    _maybe(
        native.local_repository,
        name = "com_google_absl",
        path = deps_dir + "/abseil-cpp",
    )
    _maybe(
        native.new_local_repository,
        name = "com_google_googletest",
        build_file = str(Label("//third_party/googletest:googletest.BUILD")),
        path = googletest_dir,
    )
    if not offline:
        return
    _maybe(native.local_repository, name = "rules_cc", path = bazel_mock_repos + "/rules_cc")
    _maybe(native.local_repository, name = "rules_java", path = bazel_mock_repos + "/rules_java")
    _maybe(native.local_repository, name = "platforms", path = bazel_tools_dir + "/platforms")
    _maybe(native.local_repository, name = "bazel_skylib", path = bazel_tools_dir + "/skylib")
    _maybe(_empty_coverage_tools, name = "remote_coverage_tools")
