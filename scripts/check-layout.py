#!/usr/bin/env python3
"""The architecture's rules, checked on the source tree (ARCHITECTURE.md, "Rules"):

  1. no folder holds code files directly above 30% of the code's lines (tests excluded);
  2. no include loop between folders (a folder's files include only folders below it);
  3. no function above 60 lines, no file above 400;
  4. files are written only through data/atomic_write.h: no std::ofstream, fopen for writing or
     ::open with O_CREAT in the code outside data/ (tests excluded), but for a worker's streamed log
     and the lock files (DIRECT_WRITE_ALLOWED, each with its reason).

  scripts/check-layout.py [SOURCE_DIR]      prints a table; exit 1 when a rule is broken.

Functions are found the way the code is formatted (clang-format, namespaces not indented): a body
opens with a line that ends in '{' at column 0 or inside a class (column 2), and closes with the
'}' at the same column; lambdas and blocks inside are part of their function.
"""
import os
import re
import sys

CODE_DIRS = ("framework", "attacks", "experiments", "data")
MAX_SHARE = 0.30
MAX_FUNCTION_LINES = 60
MAX_FILE_LINES = 400
# A write that bypasses the atomic writer: a stream or file opened for writing.
# The two files that are not results, each with the reason it cannot go through the atomic writer.
DIRECT_WRITE_ALLOWED = {
    "experiments/plan/executor.cpp": "a worker process's log, streamed while it runs",
    "experiments/plan/file_lock.cpp": "the lock file itself (flock on an open descriptor)",
}
DIRECT_WRITE = re.compile(r'std::ofstream|std::fstream|\bfopen\s*\([^;]*"[wa]|O_CREAT|O_WRONLY|O_RDWR')
INCLUDE = re.compile(r'^\s*#include\s+"([^"]+)"')
OPENER = re.compile(r"^( {0,2})(?!namespace\b|struct\b|class\b|enum\b|union\b|extern\b)[^\s#/}].*\)\s*(const\s*)?(noexcept\s*)?(override\s*)?(->\s*[\w:<>]+\s*)?\{\s*$")


def code_files(root):
    for top in CODE_DIRS:
        for d, _, files in os.walk(os.path.join(root, top)):
            for f in sorted(files):
                if f.endswith((".cpp", ".h")):
                    yield os.path.relpath(os.path.join(d, f), root)


def function_lengths(lines):
    """(first line number, length, signature) of each function body."""
    out = []
    i = 0
    while i < len(lines):
        m = OPENER.match(lines[i])
        if not m:
            i += 1
            continue
        indent = m.group(1)
        # the signature may start on earlier lines (a wrapped parameter list)
        start = i
        while start > 0 and lines[start - 1].strip() and not lines[start - 1].rstrip().endswith((";", "}", "{")) \
                and not lines[start - 1].lstrip().startswith(("//", "#", "template")):
            start -= 1
        j = i + 1
        close = indent + "}"
        while j < len(lines) and not (lines[j].startswith(close) and (len(lines[j]) == len(close) or lines[j][len(close)] in " ;/)")):
            j += 1
        out.append((start + 1, j - start + 1, lines[start].strip()[:70]))
        i = j + 1
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    root = os.path.abspath(root)
    per_dir, includes, long_functions, direct_writes, long_files = {}, {}, [], [], []
    total = 0
    for path in code_files(root):
        with open(os.path.join(root, path), encoding="utf-8") as f:
            lines = f.read().splitlines()
        folder = os.path.dirname(path)
        n = sum(1 for l in lines if l.strip() and not l.strip().startswith("//"))
        per_dir[folder] = per_dir.get(folder, 0) + n
        total += n
        for l in lines:
            m = INCLUDE.match(l)
            if m and "/" in m.group(1):
                target = os.path.dirname(m.group(1))
                if target != folder and os.path.isdir(os.path.join(root, target)):
                    includes.setdefault(folder, set()).add(target)
        if len(lines) > MAX_FILE_LINES:
            long_files.append((path, len(lines)))
        if not path.startswith("data" + os.sep) and path not in DIRECT_WRITE_ALLOWED:
            for k, l in enumerate(lines):
                if DIRECT_WRITE.search(l) and not l.strip().startswith("//"):
                    direct_writes.append((path, k + 1, l.strip()[:70]))
        for first, length, sig in function_lengths(lines):
            if length > MAX_FUNCTION_LINES:
                long_functions.append((path, first, length, sig))

    failures = 0
    print(f"{'folder':34} {'lines':>6} {'share':>6}")
    for folder, n in sorted(per_dir.items(), key=lambda kv: -kv[1]):
        share = n / total
        flag = "  ABOVE 30%" if share > MAX_SHARE else ""
        failures += bool(flag)
        print(f"{folder:34} {n:6d} {100 * share:5.1f}%{flag}")
    print(f"{'all code':34} {total:6d}")

    # include loops: any cycle in the folder graph
    state = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(includes.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt]
                print("include loop: " + " -> ".join(cycle))
                return 1
            if not state.get(nxt) and visit(nxt, stack + [nxt]):
                return 1
        state[node] = 2
        return 0

    loops = sum(visit(n, [n]) for n in sorted(includes) if not state.get(n))
    failures += loops
    print(f"include loops between folders: {loops}")
    for path, first, length, sig in long_functions:
        print(f"function above {MAX_FUNCTION_LINES} lines: {path}:{first} ({length} lines) {sig}")
    print(f"functions above {MAX_FUNCTION_LINES} lines: {len(long_functions)}")
    failures += len(long_functions)
    for path, n in long_files:
        print(f"file above {MAX_FILE_LINES} lines: {path} ({n} lines)")
    print(f"files above {MAX_FILE_LINES} lines: {len(long_files)}")
    failures += len(long_files)
    for path, line, text in direct_writes:
        print(f"a write outside data/atomic_write.h: {path}:{line}: {text}")
    print(f"writes outside the atomic writer: {len(direct_writes)}")
    failures += len(direct_writes)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
