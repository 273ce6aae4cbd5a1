#!/usr/bin/env python3
"""Prints the linker names of the functions MF2's public headers declare, one a line.

Usage: python3 tools/public_symbols.py CLANGXX INCLUDE_DIR HEADER...

Compiles a probe that includes every HEADER (as <mf2/NAME>) with CLANGXX in C++17, reads clang's
JSON AST, and prints the mangled name of every function (free function or method) declared in a
file under INCLUDE_DIR that a library must define: not inline, no body in the header, not
deleted or defaulted, not a template, not a file-static function. extern "C" functions print as their C names. tools/install.sh checks
each one is exported by libmf2.so and defined in libmf2.a, so an API added to a header but not
to the shared library's version script fails the install instead of a user's link.
"""

import json
import os
import subprocess
import sys
import tempfile


def main():
    if len(sys.argv) < 4:
        sys.stderr.write(__doc__)
        return 2
    clangxx, include_dir, headers = sys.argv[1], os.path.realpath(sys.argv[2]), sys.argv[3:]
    with tempfile.TemporaryDirectory() as tmp:
        probe = os.path.join(tmp, "probe.cc")
        with open(probe, "w") as f:
            for h in headers:
                f.write("#include <mf2/%s>\n" % os.path.basename(h))
        result = subprocess.run(
            [clangxx, "-std=c++17", "-fsyntax-only", "-Xclang", "-ast-dump=json",
             "-I", include_dir, probe],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        sys.stderr.write("public_symbols: %s could not compile the headers\n" % clangxx)
        return 1
    ast = json.loads(result.stdout)

    # clang writes a location's file only when it differs from the previous location written,
    # so the current file is tracked in document order.
    state = {"file": None}
    names = []

    def note_file(loc):
        if not isinstance(loc, dict):
            return
        for key in ("spellingLoc", "expansionLoc"):
            note_file(loc.get(key))
        if "file" in loc:
            state["file"] = loc["file"]

    def walk(node, in_template):
        rng = node.get("range", {})
        note_file(rng.get("begin"))
        note_file(node.get("loc"))
        here = state["file"]
        note_file(rng.get("end"))
        kind = node.get("kind", "")
        template = in_template or kind in (
            "FunctionTemplateDecl", "ClassTemplateDecl", "ClassTemplatePartialSpecializationDecl")
        if kind in ("FunctionDecl", "CXXMethodDecl", "CXXConstructorDecl", "CXXDestructorDecl"):
            has_body = any(c.get("kind") == "CompoundStmt" for c in node.get("inner", []))
            in_public = here is not None and os.path.realpath(here).startswith(include_dir + os.sep)
            if (in_public and not template and not has_body and not node.get("inline")
                    and not node.get("isImplicit") and not node.get("explicitlyDeleted")
                    and not node.get("explicitlyDefaulted") and "mangledName" in node
                    and not (kind == "FunctionDecl" and node.get("storageClass") == "static")):
                names.append(node["mangledName"])
        for child in node.get("inner", []):
            walk(child, template)

    walk(ast, False)
    for name in sorted(set(names)):
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
