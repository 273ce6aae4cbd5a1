#!/usr/bin/env python3
"""Every patch the project applies to its own tree still applies to it: the mutants of
tools/mutants (tools/mutate.sh) and the benchmark variants of bench/variants
(bench/build_variants.sh). A source edit that moves a patched line leaves the patch stale; the
mutation stage is not part of the gate and the variants are built by hand, so without this check
a stale patch is found only by the next person who runs them (bench/build_variants.sh stops at
the first patch that does not apply).

    patches_check.py [--root DIR]          check every patch against DIR (default: the runfiles
                                            root under Bazel, else the current directory)
    patches_check.py --self-test           a good patch passes and a stale one is reported

A patch applies when, for every hunk, its old side (context and removed lines, in order) occurs
as consecutive lines of the file it names, as `git apply` requires without fuzz (at any offset:
lines added above a hunk move it). Python 3 standard library only.
"""

import argparse
import glob
import os
import re
import sys
import tempfile

PATCH_GLOBS = ("tools/mutants/*.patch", "bench/variants/*.patch")
HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")


def hunks(patch_text):
    """Yields (path, old_lines) for every hunk of a unified diff. A hunk's header gives how many
    old-side and new-side lines follow, so its body is read by count: a removed source line that
    begins with "-- " (a "--- " line in the patch) is not taken for a file header."""
    lines = patch_text.splitlines()
    path = None
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("+++ "):
            name = line[4:].split("\t")[0]
            path = name[2:] if name.startswith("b/") else name
            continue
        m = HUNK.match(line)
        if not m:
            continue  # a header comment, `diff`, `index` or `---` line
        old_left = int(m.group(1)) if m.group(1) is not None else 1
        new_left = int(m.group(2)) if m.group(2) is not None else 1
        old = []
        while (old_left > 0 or new_left > 0) and i < len(lines):
            body = lines[i]
            i += 1
            if body.startswith("\\"):
                continue  # "\ No newline at end of file"
            kind, text = (body[0], body[1:]) if body else (" ", "")  # "": a stripped context line
            if kind in " -":
                old.append(text)
                old_left -= 1
            if kind in " +":
                new_left -= 1
        yield path, old


def problems(root, patch_path):
    """What keeps the patch at `patch_path` from applying to the tree at `root` (empty: none)."""
    with open(patch_path, encoding="utf-8") as f:
        text = f.read()
    found = []
    n = 0
    for path, old in hunks(text):
        n += 1
        target = os.path.join(root, path)
        if not os.path.isfile(target):
            found.append(f"hunk {n}: {path} does not exist")
            continue
        with open(target, encoding="utf-8") as f:
            lines = f.read().splitlines()
        k = len(old)
        if not any(lines[i:i + k] == old for i in range(len(lines) - k + 1)):
            first = next((x for x in old if x.strip()), "")
            found.append(f"hunk {n}: its lines are not in {path} (first: {first.strip()!r})")
    if n == 0:
        found.append("no hunk")
    return found


def check(root):
    patches = sorted(p for g in PATCH_GLOBS for p in glob.glob(os.path.join(root, g)))
    if not patches:
        print(f"patches_check: no patch under {root} ({', '.join(PATCH_GLOBS)})")
        return 1
    bad = 0
    for p in patches:
        for problem in problems(root, p):
            print(f"patches_check: {os.path.relpath(p, root)} does not apply: {problem}")
            bad += 1
    print(f"patches_check: {len(patches)} patches, {bad} problems")
    return 1 if bad else 0


def self_test():
    with tempfile.TemporaryDirectory(dir=os.environ.get("TEST_TMPDIR")) as d:
        os.makedirs(os.path.join(d, "src"))
        with open(os.path.join(d, "src", "a.cc"), "w", encoding="utf-8") as f:
            f.write("int a() {\n  return 1;\n}\n\nint b() {\n  return 2;\n}\n")
        good = ("# a header comment\ndiff --git a/src/a.cc b/src/a.cc\n--- a/src/a.cc\n"
                "+++ b/src/a.cc\n@@ -5,3 +5,3 @@\n int b() {\n-  return 2;\n+  return 3;\n }\n")
        stale = good.replace("-  return 2;", "-  return 4;")
        missing = good.replace("src/a.cc", "src/gone.cc")
        with open(os.path.join(d, "src", "b.cc"), "w", encoding="utf-8") as f:
            f.write("int c() {\n  return 5;\n}\n")
        two_files = good + ("diff --git a/src/b.cc b/src/b.cc\n--- a/src/b.cc\n+++ b/src/b.cc\n"
                            "@@ -1,3 +1,3 @@\n int c() {\n-  return 5;\n+  return 6;\n }\n")
        with open(os.path.join(d, "src", "c.sql"), "w", encoding="utf-8") as f:
            f.write("SELECT 1;\n-- a comment\nSELECT 2;\n")
        dashes = ("--- a/src/c.sql\n+++ b/src/c.sql\n@@ -1,3 +1,2 @@\n SELECT 1;\n"
                  "--- a comment\n SELECT 2;\n")
        cases = [(good, 0), (stale, 1), (missing, 1), (two_files, 0), (dashes, 0),
                 (dashes.replace("--- a comment", "--- another comment"), 1)]
        for i, (text, want) in enumerate(cases):
            path = os.path.join(d, f"p{i}.patch")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            got = len(problems(d, path))
            if got != want:
                print(f"patches_check self-test: case {i}: {got} problems, expected {want}")
                return 1
    print("patches_check self-test: good patches (one file, two files, a removed line that "
          "begins with '-- ') pass, stale ones and a missing file are reported")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", help="the tree to check (default: Bazel runfiles, else .)")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    root = args.root
    if root is None:
        runfiles = os.environ.get("TEST_SRCDIR")
        workspace = os.environ.get("TEST_WORKSPACE", "mf2")
        root = os.path.join(runfiles, workspace) if runfiles else "."
    rc = self_test()
    return rc or check(root)


if __name__ == "__main__":
    sys.exit(main())
