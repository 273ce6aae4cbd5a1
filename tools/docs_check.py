#!/usr/bin/env python3
"""The repository documents itself: no file cites a document a clone does not contain.

Checks, over every file of the tree (text files only; binary files such as corpus entries and
images are skipped):
  1. no file names the background documents MF2's design was first written in, nor the folder
     they lived in (FORBIDDEN below): what they said is in docs/design.md and docs/protocol.md;
  2. no file contains the author machine's workspace root (WORKSPACE_ROOT below), and no Markdown file
     contains a home-directory path (`/root/`, `/home/`): docs must work from any clone;
  3. every relative link of a Markdown file (`[text](path)`, `[text](path#anchor)`, `[ref]: path`)
     names a file or folder of the tree, and an anchor names a heading of the Markdown file it
     points to. Links inside fenced code blocks and inline code are not links.

This file is the one place that spells the forbidden names, so it does not check itself.

Usage:
  docs_check.py                 under `bazel test` (//:docs_self_contained_test): the tree is the
                                test's runfiles, i.e. the files of every package the BUILD files
                                list as data (Bazel cannot see dotfiles nor .bazelignore'd folders)
  docs_check.py --root DIR      the files git tracks in DIR (dotfiles and examples/ included), or
                                every file under DIR when it is not a git checkout
  docs_check.py --self-test     plants each kind of violation in a scratch tree and checks that
                                each one is reported (the test runs this first, so it can fail)
Exit status 0 when clean; 1 with one line per finding otherwise.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

# Names of the outside documents (case-insensitive). A citation is any mention.
FORBIDDEN = [
    # Written in pieces so this checker does not name the paths it forbids.
    ("the design folder", re.compile(r"shared" r"[/]" r"design", re.I)),
    # "design note", also broken across a line (with a comment leader on the next line).
    ("design note",
     re.compile(r"\bdesign(?:[ \t]+|[ \t]*\n[ \t]*(?:(?://+|#+|\*|;+)[ \t]*)?)notes?\b", re.I)),
    ("protocol-hazards", re.compile(r"protocol-hazards", re.I)),
    ("style.md", re.compile(r"\bstyle\.md\b", re.I)),
    ("larson-facts", re.compile(r"larson-facts", re.I)),
    ("offline-bazel-facts", re.compile(r"offline-bazel-facts", re.I)),
    ("cda-investigation", re.compile(r"cda-investigation", re.I)),
]
# Absolute paths of the author's machine.
WORKSPACE_ROOT = re.compile(r"(?<![\w.~$/-])/" r"wor[k]" r"/")
HOME_PATHS = re.compile(r"(?<![\w.~$/-])/(?:root|home)/")

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`\n]*`")
INLINE_LINK = re.compile(r"\[[^\]\n]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_LINK = re.compile(r"^\s{0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")

SELF = os.path.realpath(__file__)


def read_text(path):
    """The file's text, or None for a binary file."""
    with open(path, "rb") as f:
        data = f.read()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def line_of(text, offset):
    return text.count("\n", 0, offset) + 1


def markdown_lines(text):
    """(line number, line, line with inline code blanked) outside fenced code blocks."""
    fenced = None
    for n, line in enumerate(text.split("\n"), 1):
        m = FENCE.match(line)
        if m:
            if fenced is None:
                fenced = m.group(1)
            elif m.group(1) == fenced:
                fenced = None
            continue
        if fenced is None:
            yield n, line, INLINE_CODE.sub("code", line)


def slug(heading, seen):
    """The anchor GitHub gives a heading (lower case, punctuation dropped, spaces to hyphens)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    text = text.replace(" ", "-")
    n = seen.get(text, 0)
    seen[text] = n + 1
    return text if n == 0 else "%s-%d" % (text, n)


def anchors_of(text):
    seen = {}
    return {slug(m.group(2), seen) for _, line, _ in markdown_lines(text)
            for m in [HEADING.match(line)] if m}


def check_tree(root, files, unseen=()):
    """Findings for `files` (paths relative to `root`) as 'path:line: message' strings. Links
    into the folders `unseen` (relative paths whose files are not in `files`) are not checked."""
    findings = []
    texts = {}
    for rel in files:
        path = os.path.join(root, rel)
        if os.path.realpath(path) == SELF:
            continue
        text = read_text(path)
        if text is not None:
            texts[rel] = text
    dirs = set()
    for rel in files:
        parts = rel.split("/")
        for i in range(1, len(parts)):
            dirs.add("/".join(parts[:i]))
    known = set(files)

    for rel, text in sorted(texts.items()):
        is_md = rel.endswith(".md")
        for name, pattern in FORBIDDEN:
            for m in pattern.finditer(text):
                findings.append("%s:%d: cites an outside document (%s): %r" %
                                (rel, line_of(text, m.start()), name, m.group(0)))
        for m in WORKSPACE_ROOT.finditer(text):
            findings.append("%s:%d: names a path of the author's machine (its workspace root)" %
                            (rel, line_of(text, m.start())))
        if not is_md:
            continue
        for m in HOME_PATHS.finditer(text):
            findings.append("%s:%d: names a home-directory path (%s)" %
                            (rel, line_of(text, m.start()), m.group(0)))
        for n, _, line in markdown_lines(text):
            targets = [m.group(1) for m in INLINE_LINK.finditer(line)]
            ref = REF_LINK.match(line)
            if ref:
                targets.append(ref.group(1))
            for target in targets:
                problem = check_link(rel, target, known, dirs, texts, unseen)
                if problem:
                    findings.append("%s:%d: link %r: %s" % (rel, n, target, problem))
    return findings


def check_link(rel, target, known, dirs, texts, unseen):
    if not target or SCHEME.match(target) or target.startswith("//"):
        return None  # empty, or a URL (http:, mailto:, ...)
    path, _, anchor = target.partition("#")
    if path.startswith("/"):
        return "absolute path (use a path relative to this file)"
    if path:
        joined = os.path.normpath(os.path.join(os.path.dirname(rel), path))
        if joined == ".." or joined.startswith("../"):
            return "points outside the repository"
        resolved = "" if joined == "." else joined
    else:
        resolved = rel  # "#anchor": this file
    if any(resolved == u or resolved.startswith(u + "/") for u in unseen):
        return None
    if resolved and resolved not in known and resolved not in dirs:
        return "no such file or folder in the repository"
    if anchor and resolved.endswith(".md") and resolved in texts:
        if anchor.lower() not in anchors_of(texts[resolved]):
            return "no heading with anchor #%s in %s" % (anchor, resolved)
    return None


def list_files(root):
    """Files of `root` relative to it: git's tracked files when possible, else a walk."""
    if os.path.isdir(os.path.join(root, ".git")) or os.path.isfile(os.path.join(root, ".git")):
        try:
            out = subprocess.run(["git", "-C", root, "ls-files", "-z"], check=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
            return sorted(p for p in out.decode().split("\0")
                          if p and os.path.isfile(os.path.join(root, p)))
        except (OSError, subprocess.CalledProcessError):
            pass
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if d != ".git" and not d.startswith("bazel-")]
        for f in filenames:
            files.append(os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/"))
    return sorted(files)


def self_test():
    """Plants every kind of finding in a scratch tree; returns the kinds that went unreported."""
    planted = {
        "README.md": "# Top\n\n## A section\n\nSee [ok](docs/a.md#b-c) and [here](#a-section).\n"
                     "[missing](docs/none.md) [anchor](docs/a.md#nope) [up](../x.md)\n"
                     "[abs](/etc/passwd) [dir](docs) [url](https://x.org/home/a)\n"
                     "```\n[in a fence](not/checked.md)\n```\n`[inline](not/checked.md)`\n"
                     "[ref]: docs/gone.md\n"
                     "From /home/someone/clone and /root/x.\n",
        "docs/a.md": "# A\n\n## B `c`\n\nThe design\nnote, protocol-hazards.md, style.md.\n",
        "src/x.cc": "// see " + "/wo" + "rk/" + "shared" + "/design/larson-facts.md and the design\n// note\n"
                    "// offline-bazel-facts.md; /home/ in code is fine\n",
        "src/blob.bin": "\0design note",
    }
    with tempfile.TemporaryDirectory(dir=os.environ.get("TEST_TMPDIR")) as root:
        for rel, text in planted.items():
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            with open(os.path.join(root, rel), "w") as f:
                f.write(text)
        findings = check_tree(root, sorted(planted))
    expected = [
        "README.md:6: link 'docs/none.md': no such file",
        "README.md:6: link 'docs/a.md#nope': no heading with anchor #nope",
        "README.md:6: link '../x.md': points outside",
        "README.md:7: link '/etc/passwd': absolute path",
        "README.md:12: link 'docs/gone.md': no such file",
        "README.md:13: names a home-directory path (/home/)",
        "README.md:13: names a home-directory path (/root/)",
        "docs/a.md:5: cites an outside document (design note)",
        "docs/a.md:6: cites an outside document (protocol-hazards)",
        "docs/a.md:6: cites an outside document (style.md)",
        "src/x.cc:1: cites an outside document (the design folder)",
        "src/x.cc:1: cites an outside document (larson-facts)",
        "src/x.cc:1: cites an outside document (design note)",
        "src/x.cc:3: cites an outside document (offline-bazel-facts)",
        "src/x.cc:1: names a path of the author's machine (its workspace root)",
    ]
    missed = [e for e in expected if not any(f.startswith(e) for f in findings)]
    unexpected = [f for f in findings if not any(f.startswith(e) for e in expected)]
    return missed, unexpected


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", help="check the files of this tree (git's list when a checkout)")
    parser.add_argument("--self-test", action="store_true",
                        help="only check that planted violations are reported")
    args = parser.parse_args()

    missed, unexpected = self_test()
    for e in missed:
        print("self-test: planted violation not reported: %s" % e)
    for f in unexpected:
        print("self-test: reported although not planted: %s" % f)
    if missed or unexpected:
        return 1
    if args.self_test:
        print("self-test: every planted violation reported")
        return 0

    unseen = []
    if args.root:
        root = args.root
    elif "TEST_SRCDIR" in os.environ:
        root = os.path.join(os.environ["TEST_SRCDIR"], os.environ.get("TEST_WORKSPACE", "mf2"))
        # Folders Bazel does not see (.bazelignore) have no files in the runfiles: links into them
        # are left to the --root run.
        ignore = os.path.join(root, ".bazelignore")
        if os.path.exists(ignore):
            with open(ignore) as f:
                unseen = [l.strip().strip("/") for l in f
                          if l.strip() and not l.startswith("#")]
    else:
        parser.error("--root DIR is needed outside bazel test")
    files = list_files(root)
    findings = check_tree(root, files, unseen)
    for f in findings:
        print(f)
    print("%d files checked, %d findings%s" % (len(files), len(findings),
                                               "; links into %s not checked (not in Bazel's view)"
                                               % ", ".join(unseen) if unseen else ""))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
