#!/usr/bin/env python3
"""Lists each fuzz target of fuzz/BUILD with every source file it needs, read from the BUILD files.

Usage: python3 tools/fuzz_sources.py [REPO_ROOT]

Prints one line per `mf2_cc_fuzz` target: `NAME SRC...`, the target's own sources first, then the
.cc files of every library it depends on in this repository (transitively, in a stable order).
A build without Bazel (.clusterfuzzlite/build.sh) compiles exactly these, so a .cc file added to
a library's `srcs` is picked up without editing the script. External dependencies are printed
as `@REPO` words after the sources (the caller maps them to include directories).

The BUILD files are evaluated as Python with a stand-in for every Bazel function: rule calls
record their arguments, `glob` globs, `select` takes the default branch, and `load`ed symbols
become opaque values. It exits non-zero, naming the file, when a BUILD file cannot be read this
way, when a label does not resolve, or when a listed source file does not exist.
"""

import glob as globlib
import os
import sys


class Opaque:
    """A loaded constant or macro result whose value does not matter here."""

    def __add__(self, other):
        return self

    __radd__ = __add__

    def __iter__(self):
        return iter(())

    def __call__(self, *args, **kwargs):
        return self


class Package:
    def __init__(self, root, name):
        self.root = root
        self.name = name
        self.dir = os.path.join(root, name)
        self.rules = {}

    def glob(self, include, exclude=(), **unused):
        found = set()
        for pattern in include:
            for path in globlib.glob(os.path.join(self.dir, pattern), recursive=True):
                if os.path.isfile(path):
                    found.add(os.path.relpath(path, self.dir))
        for pattern in exclude:
            for path in globlib.glob(os.path.join(self.dir, pattern), recursive=True):
                found.discard(os.path.relpath(path, self.dir))
        return sorted(found)


class Namespace(dict):
    """BUILD-file names: every unknown one is a rule that records its keyword arguments."""

    def __init__(self, package):
        super().__init__()
        self.package = package
        self["glob"] = package.glob
        self["select"] = lambda branches, **unused: list(branches.get("//conditions:default", []))
        self["load"] = self._load
        self["True"] = True
        self["False"] = False
        self["None"] = None

    def _load(self, bzl, *symbols, **aliases):
        for symbol in list(symbols) + list(aliases):
            self[symbol] = Rule(self.package, symbol)

    def __missing__(self, key):
        return Rule(self.package, key)


class Rule(Opaque):
    """A rule or macro: a call with `name` records its arguments. Used as a value, opaque."""

    def __init__(self, package, kind):
        self.package = package
        self.kind = kind

    def __call__(self, *args, **kwargs):
        if "name" in kwargs:
            kwargs["_kind"] = self.kind
            self.package.rules[kwargs["name"]] = kwargs
        return Opaque()


def fail(message):
    sys.stderr.write("fuzz_sources: error: %s\n" % message)
    sys.exit(1)


class Workspace:
    def __init__(self, root):
        self.root = root
        self.packages = {}

    def package(self, name):
        if name not in self.packages:
            build = os.path.join(self.root, name, "BUILD")
            if not os.path.isfile(build):
                fail("no BUILD file for package //%s (%s)" % (name, build))
            package = Package(self.root, name)
            with open(build) as f:
                code = compile(f.read(), build, "exec")
            try:
                exec(code, {"__builtins__": {}}, Namespace(package))
            except Exception as e:  # a construct this reader does not model
                fail("cannot evaluate %s: %s: %s" % (build, type(e).__name__, e))
            self.packages[name] = package
        return self.packages[name]

    def resolve(self, label, current):
        """Returns (package, name) for a label in this repository, or ('@repo', None)."""
        if label.startswith("@"):
            return label.split("//")[0], None
        if label.startswith(":"):
            return current, label[1:]
        if label.startswith("//"):
            pkg, _, name = label[2:].partition(":")
            return pkg, name or pkg.rsplit("/", 1)[-1]
        return current, label

    def rule(self, pkg, name, referrer):
        rules = self.package(pkg).rules
        if name not in rules:
            fail("//%s:%s (named by %s) is not a rule in %s/BUILD" % (pkg, name, referrer, pkg))
        return rules[name]


def sources_of(ws, pkg, name):
    """The target's own sources, then its dependencies' .cc files, and the external repos."""
    own, libs, externals, seen = [], [], [], set()

    def source_paths(p, rule, label):
        paths = []
        for src in rule.get("srcs", []):
            if not isinstance(src, str):
                continue
            path = os.path.join(p, src) if p else src
            if not os.path.isfile(os.path.join(ws.root, path)):
                fail("%s lists %s, which does not exist" % (label, path))
            if path.endswith((".cc", ".cpp", ".c")):
                paths.append(path)
        return paths

    def visit(p, n, referrer):
        if (p, n) in seen:
            return
        seen.add((p, n))
        rule = ws.rule(p, n, referrer)
        label = "//%s:%s" % (p, n)
        for dep in rule.get("deps", []):
            if not isinstance(dep, str):
                continue
            dp, dn = ws.resolve(dep, p)
            if dn is None:
                if dp not in externals:
                    externals.append(dp)
                continue
            visit(dp, dn, label)
        libs.extend(path for path in source_paths(p, rule, label) if path not in libs)

    top = ws.rule(pkg, name, "the command line")
    own = source_paths(pkg, top, "//%s:%s" % (pkg, name))
    if not own:
        fail("//%s:%s has no .cc sources" % (pkg, name))
    seen.add((pkg, name))
    for dep in top.get("deps", []):
        dp, dn = ws.resolve(dep, pkg)
        if dn is None:
            if dp not in externals:
                externals.append(dp)
            continue
        visit(dp, dn, "//%s:%s" % (pkg, name))
    return own, [path for path in libs if path not in own], externals


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
    ws = Workspace(root)
    fuzz = ws.package("fuzz")
    targets = sorted(n for n, r in fuzz.rules.items() if r["_kind"] == "mf2_cc_fuzz")
    if not targets:
        fail("fuzz/BUILD declares no mf2_cc_fuzz target")
    for name in targets:
        own, libs, externals = sources_of(ws, "fuzz", name)
        print(" ".join([name] + own + libs + externals))


if __name__ == "__main__":
    main()
