#!/usr/bin/env python3
"""Checks the layering of mf2/ written in mf2/BUILD.

mf2/BUILD lists the layers, lowest first, as comment lines of the form

    # layer NAME: file file ...
    #             file ...          (continued: a comment line of file names only)

A file may include (`#include "mf2/..."`) only files of its own layer or a lower one. Every
non-test source file of mf2/ must be placed in exactly one layer, and every file listed must
exist. Tests (*_test.cc, *_test.c) and the mf2/testing, mf2/testdata packages are not layered.

usage: layering_check.py [--root DIR]     check DIR/mf2 (default: the current directory)
       layering_check.py --self-test      check that a violation in a small tree is reported
Exit status 0 when the layering holds, 1 with one line per problem otherwise.
"""

import os
import re
import sys
import tempfile

LAYER_RE = re.compile(r"^#\s+layer\s+([\w-]+):\s*(.*)$")
CONTINUED_RE = re.compile(r"^#\s+((?:[\w.]+\.\w+\s*)+)$")
INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"mf2/([\w.]+)"')


def read_layers(build_text):
    """Returns ([layer names], {file: layer index}, [problems])."""
    names, where, problems = [], {}, []
    in_layer = False
    for line in build_text.splitlines():
        m = LAYER_RE.match(line)
        c = CONTINUED_RE.match(line) if in_layer and not m else None
        in_layer = bool(m or c)
        if m:
            names.append(m.group(1))
            files = m.group(2).split()
        elif c:
            files = c.group(1).split()
        else:
            continue
        for f in files:
            if f in where:
                problems.append(f"mf2/BUILD: {f} is in two layers")
            where[f] = len(names) - 1
    if not names:
        problems.append("mf2/BUILD: no '# layer NAME: files' lines")
    return names, where, problems


def layered_files(mf2_dir):
    for f in sorted(os.listdir(mf2_dir)):
        if not re.search(r"\.(h|hpp|cc|c)$", f) or re.search(r"_test\.(cc|c)$", f):
            continue
        yield f


def check(root):
    mf2_dir = os.path.join(root, "mf2")
    with open(os.path.join(mf2_dir, "BUILD")) as fh:
        names, where, problems = read_layers(fh.read())
    present = set(layered_files(mf2_dir))
    for f in sorted(where):
        if f not in present:
            problems.append(f"mf2/BUILD: layer {names[where[f]]} lists {f}, which does not exist")
    for f in sorted(present):
        if f not in where:
            problems.append(f"mf2/{f}: in no layer of mf2/BUILD")
            continue
        with open(os.path.join(mf2_dir, f)) as fh:
            for n, line in enumerate(fh, 1):
                m = INCLUDE_RE.match(line)
                if not m:
                    continue
                inc = m.group(1)
                if inc not in where:
                    problems.append(f"mf2/{f}:{n}: includes mf2/{inc}, which is in no layer")
                elif where[inc] > where[f]:
                    problems.append(
                        f"mf2/{f}:{n}: includes mf2/{inc} (layer {names[where[inc]]}) from layer "
                        f"{names[where[f]]}, below it")
    return problems


def self_test():
    """The checker must fail on a tree that breaks the layering, and pass on one that keeps it."""
    with tempfile.TemporaryDirectory() as root:
        os.mkdir(os.path.join(root, "mf2"))

        def write(name, text):
            with open(os.path.join(root, "mf2", name), "w") as fh:
                fh.write(text)

        write("BUILD", "# layer low: low.h\n# layer high: high.h\n#             high.cc\n")
        write("low.h", "#include <cstdint>\n")
        write("high.h", '#include "mf2/low.h"\n')
        write("high.cc", '#include "mf2/high.h"\n')
        write("high_test.cc", '#include "mf2/high.h"\n')
        ok = check(root)
        if ok:
            return [f"self-test: a layered tree was rejected: {ok}"]
        write("low.h", '#include "mf2/high.h"\n')
        write("stray.cc", "\n")
        bad = check(root)
        want = ["mf2/low.h:1: includes mf2/high.h", "mf2/stray.cc: in no layer"]
        missing = [w for w in want if not any(p.startswith(w) for p in bad)]
        if missing:
            return [f"self-test: not reported: {missing} (got {bad})"]
    return []


def main(argv):
    root = "."
    if "--self-test" in argv:
        problems = self_test()
    else:
        if "--root" in argv:
            root = argv[argv.index("--root") + 1]
        problems = check(root)
    for p in problems:
        print(p)
    if not problems:
        print("layering_check: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
