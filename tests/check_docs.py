#!/usr/bin/python3
"""The docs say what the code does.

  tests/check_docs.py ROBUSTLAB SOURCE_DIR

  1. docs/configuration.md is exactly `robustlab config --reference`, with no undocumented key;
  2. every key of the resolved default config (`run --dump-config`) is in that reference, and every
     `section.key` the prose of README.md and docs/ names is one;
  3. docs/commands.md holds every subcommand's --help as it prints now, and every flag in it also
     appears in README.md or docs/;
  4. README.md has at most 250 lines and no line above 200 characters outside code blocks, and links
     every page of docs/;
  5. no text of the project speaks of its own history (the word HISTORY_WORD below: a period of the
     project's work; machines are named by CPU and date instead);
  6. every `build/robustlab ...` line in a code block of README.md or docs/ names a command and flags
     that exist, and the README tour's own experiment resolves (`run my.toml --dump-config`).
Prints each failure; exit 1 when any.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

COMMANDS = ["run", "sweep", "train", "pretrain", "finetune", "attack", "report", "convert", "bench", "config"]
TEXT_DIRS = ["docs", "scripts", "tests", "experiments", "framework", "attacks", "data", "python", "results", ".ci"]
HISTORY_WORD = "ses" + "sion"  # after "Catch::" it is the test framework's class name, not history
TEXT_EXT = (".md", ".sh", ".cpp", ".h", ".py", ".toml", ".txt", ".in", ".js")


def run(binary, *args):
    return subprocess.run([binary, *args], capture_output=True, text=True, check=True).stdout


def reference_sections(text):
    """{section: set(keys)} of the reference's tables (stage keys under train, pretrain and finetune)."""
    out, section = {}, None
    names = {"Top level": [""], "`[data]`": ["data"], "`[model]`": ["model"], "`[[model.layers]]`": ["model.layers"],
             "`[train]`, `[pretrain]`, `[finetune]`": ["train", "pretrain", "finetune"], "`[pretrain]` only": ["pretrain"],
             "`[finetune]` only": ["finetune"], "`[[arms]]`": ["arms"], "`[attack]`": ["attack"], "`[robustness]`": ["robustness"], "`[sweep]`": ["sweep"],
             "`[sweep.random]`": ["sweep.random"]}
    for line in text.splitlines():
        if line.startswith("## "):
            section = next((v for k, v in names.items() if line[3:].startswith(k)), None)
        m = re.match(r"^\| `([a-z_0-9]+)` \|", line)
        if m and section:
            for s in section:
                out.setdefault(s, set()).add(m.group(1))
    return out


def main():
    binary, root = os.path.abspath(sys.argv[1]), sys.argv[2]
    failures = []
    docs_dir = os.path.join(root, "docs")
    pages = sorted(f for f in os.listdir(docs_dir) if f.endswith(".md")) if os.path.isdir(docs_dir) else []
    docs = {p: open(os.path.join(docs_dir, p), encoding="utf-8").read() for p in pages}
    readme = open(os.path.join(root, "README.md"), encoding="utf-8").read()

    reference = run(binary, "config", "--reference")
    if docs.get("configuration.md") != reference:
        failures.append("docs/configuration.md differs from `robustlab config --reference` (regenerate it: "
                        "build/robustlab config --reference > docs/configuration.md)")
    if "(undocumented)" in reference:
        failures.append("undocumented config keys (add their meaning to experiments/cli/config_help.cpp): " +
                        ", ".join(re.findall(r"^\| `([^`]+)` .*\(undocumented\)", reference, re.M)))

    keys = reference_sections(reference)
    section = ""
    for line in run(binary, "run", "--dump-config").splitlines():
        m = re.match(r"^\[\[?([^\]]+)\]\]?$", line)
        if m:
            section = m.group(1)
            continue
        m = re.match(r"^([a-z_0-9]+) = ", line)
        if m and not section.startswith("pretrain.variants.") and m.group(1) not in keys.get(section, set()):
            failures.append(f"--dump-config key '{(section + '.') if section else ''}{m.group(1)}' is not in the configuration reference")

    # Keys the prose names as section.key exist.
    for page, text in [("README.md", readme)] + [("docs/" + p, t) for p, t in docs.items() if p != "configuration.md"]:
        for section, key in set(re.findall(r"`(data|model|train|pretrain|finetune|attack|robustness|sweep)\.([a-z_0-9]+)", text)):
            if key not in keys.get(section, set()):
                failures.append(f"{page}: names `{section}.{key}`, which is not a config key")

    all_text = readme + "".join(docs.values())
    for command in COMMANDS:
        help_text = run(binary, command, "--help")
        if help_text.strip() not in docs.get("commands.md", ""):
            failures.append(f"docs/commands.md does not hold `robustlab {command} --help` as it prints now (paste it in)")
        for flag in sorted(set(re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*)", help_text))):
            if f"--{flag}" not in all_text:
                failures.append(f"robustlab {command} --{flag} is in --help but in neither README.md nor docs/")

    # Every robustlab command line in the docs' code blocks: the command exists and takes every flag used.
    helps = {c: run(binary, c, "--help") for c in COMMANDS}
    for page, text in [("README.md", readme)] + [("docs/" + p, t) for p, t in docs.items()]:
        for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
            for line in block.splitlines():
                words = line.split("#")[0].split()
                if len(words) < 2 or not words[0].endswith("build/robustlab"):
                    continue
                if words[1] not in helps:
                    failures.append(f"{page}: `{line.strip()}`: no command '{words[1]}'")
                    continue
                for w in words[2:]:
                    flag = w.split("=")[0]
                    if flag.startswith("--") and flag not in helps[words[1]]:
                        failures.append(f"{page}: `{line.strip()}`: robustlab {words[1]} has no flag {flag}")
    # The tour's own experiment, as far as it runs without training: copy the default, resolve it.
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(os.path.join(root, "experiments", "configs", "default.toml"), os.path.join(tmp, "my.toml"))
        for extra in ([], ["--set", "seeds=[0,1,2,3,4]"]):
            r = subprocess.run([binary, "run", "my.toml", "--dump-config", *extra], cwd=tmp, capture_output=True, text=True)
            if r.returncode != 0:
                failures.append(f"README tour: robustlab run my.toml {' '.join(extra)} --dump-config failed: {r.stderr.strip()}")

    lines = readme.splitlines()
    if len(lines) > 250:
        failures.append(f"README.md has {len(lines)} lines (at most 250; move detail into docs/)")
    in_code = False
    for k, line in enumerate(lines, 1):
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and len(line) > 200:
            failures.append(f"README.md:{k}: {len(line)} characters (at most 200 outside code blocks)")
    for p in pages:
        if f"docs/{p}" not in readme:
            failures.append(f"docs/{p} is not linked from README.md")

    # Spelled in two parts so that this file, which every text check also reads, does not hold it.
    history = re.compile(r"(?<!Catch::)\b" + HISTORY_WORD + r"s?\b", re.I)
    files = [os.path.join(root, f) for f in ("README.md", "BENCHMARKS.md", "ARCHITECTURE.md", "CMakeLists.txt")]
    for d in TEXT_DIRS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, d)):
            dirnames[:] = [x for x in dirnames if x not in ("cache", "__pycache__", "node_modules")]
            files += [os.path.join(dirpath, f) for f in filenames if f.endswith(TEXT_EXT)]
    for path in files:
        if not os.path.isfile(path) or os.path.abspath(path) == os.path.abspath(__file__):
            continue
        for k, line in enumerate(open(path, encoding="utf-8", errors="replace"), 1):
            if history.search(line):
                failures.append(f"{os.path.relpath(path, root)}:{k}: speaks of the project's history: {line.strip()[:80]}")

    for f in failures:
        print(f)
    print(f"docs checks: {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
