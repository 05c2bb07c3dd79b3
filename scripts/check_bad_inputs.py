#!/usr/bin/python3
"""Keeps the bad-input catalogue (docs/bad-inputs.md, issue 16) in step with the tests.

Usage: python3 scripts/check_bad_inputs.py [SOURCE_ROOT]      (default: this script's repository)

Rules (each broken rule is one line on stdout; exit 1 if any, else a summary line and exit 0):

  (a) Every `expect_fail "NAME" ...` call in tests/cli/*.sh (tap.sh, which defines it, excepted) is cited
      in a row of a catalogue table (a table with a "Tested in" column; the prose does not count) as the
      code span `tests/cli/SCRIPT.sh: NAME`, NAME written exactly as between the
      double quotes in the script (unexpanded: `--text-range $r refused`). Inside a table cell a '|' of
      NAME is written '\\|' (GitHub tables); the checker reads it back as '|'.
  (b) Every test location the catalogue cites exists:
      - `tests/...` (a file, a directory or a glob): it exists;
      - `tests/cli/SCRIPT.sh: NAME`: NAME is the name of an expect_fail / expect_ok call of SCRIPT, or a
        part of the name of one of its hand-written checks (the first argument of ok, not_ok, skip_test);
      - `tests/unit/.../FILE.c: test_a, test_b`: each function is defined in FILE and, where FILE is a
        cmocka suite, registered in its main() (a test that is not registered never runs);
      - relative Markdown links ([text](../tests/fuzz/README.md)) point at existing files;
      a path with a <placeholder> (`tests/cli/<script>.sh: <name>`) is not a citation.
  (c) Every data row of a catalogue table (a table whose header has a "Tested in" column) cites at least
      one test location.

Summary: "N rows, N CLI cases cited, N unit tests cited" (rows: data rows of the catalogue tables;
CLI cases: distinct script + name citations; unit tests: distinct file + function citations).
Python 3 standard library only.
"""
import glob
import os
import re
import sys

DOC = "docs/bad-inputs.md"
CLI_DIR = "tests/cli"
NOT_A_SCENARIO = {"tap.sh"}  # defines expect_fail, calls none

# A TAP helper call with its first argument in double or single quotes, as written in the script.
CALL_RE = re.compile(r"""(?:^|[\s;&|(!])(expect_fail|expect_ok|not_ok|ok|skip_test)[ \t]+("((?:[^"\\]|\\.)*)"|'([^']*)')""")
# A cited test location: `tests/PATH` or `tests/PATH: REST` (a code span).
CITE_RE = re.compile(r"`(tests/[^`\s:]+)(?::[ \t]*((?:[^`\\]|\\.)+?))?[ \t]*`")
LINK_RE = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def script_calls(text):
    """[(line number, helper, NAME)] of the helper calls of a script (comment lines skipped)."""
    calls = []
    for no, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        for m in CALL_RE.finditer(line):
            name = m.group(3) if m.group(3) is not None else m.group(4)
            calls.append((no, m.group(1), name))
    return calls


def is_separator(line):
    s = line.strip()
    return s.startswith("|") and all(re.fullmatch(r":?-{3,}:?", c) for c in split_cells(s))


def table_rows(doc):
    """[(line number, cells, header cells)] of the data rows of every Markdown table."""
    rows, lines = [], doc.splitlines()
    header = None
    for i, line in enumerate(lines):
        s = line.strip()
        if not s.startswith("|"):
            header = None
        elif is_separator(s):
            pass
        elif i + 1 < len(lines) and is_separator(lines[i + 1]):
            header = split_cells(s)
        else:
            rows.append((i + 1, split_cells(s), header or []))
    return rows


def split_cells(row):
    """The cells of a table row; an escaped pipe (\\|) stays inside its cell."""
    s = row.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    return [c.strip() for c in re.split(r"(?<!\\)\|", s)]


def main(argv):
    root = os.path.abspath(argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    problems = []
    doc_path = os.path.join(root, DOC)
    if not os.path.isfile(doc_path):
        print(f"{DOC}: missing (looked in {root}; usage: check_bad_inputs.py [SOURCE_ROOT])")
        return 1
    doc = read(doc_path)

    # ---- the citations of the catalogue ----
    cites, cli_cite_lines, unit_cite_lines = [], {}, {}
    for no, line in enumerate(doc.splitlines(), 1):
        for m in CITE_RE.finditer(line):
            path, rest = m.group(1), m.group(2)
            rest = rest.replace("\\|", "|") if rest is not None else None
            cites.append((no, path, rest))

    texts = {}

    def text_of(path):
        if path not in texts:
            full = os.path.join(root, path)
            if os.path.isfile(full):
                texts[path] = read(full)
            elif os.path.isdir(full) or glob.glob(full):  # `tests/cli`, `tests/cli/*.sh`
                texts[path] = ""
            else:
                texts[path] = None
        return texts[path]

    calls_of = {}

    def calls(path):
        if path not in calls_of:
            calls_of[path] = script_calls(text_of(path) or "")
        return calls_of[path]

    for no, path, rest in cites:
        where = f"{DOC}:{no}"
        if "<" in path:  # a placeholder (`tests/cli/<script>.sh: <name>`), not a citation
            continue
        if text_of(path) is None:
            problems.append(f"{where}: cites {path}, which does not exist")
            continue
        if rest is None:
            continue
        if path.endswith(".sh"):
            cs = calls(path)
            exact = {n for _, h, n in cs if h in ("expect_fail", "expect_ok")}
            if rest not in exact and not any(rest in n for _, h, n in cs):
                problems.append(f"{where}: `{path}: {rest}`: no expect_fail/expect_ok case of that name and no "
                                f"ok/not_ok/skip_test check containing it in {path}")
                continue
            cli_cite_lines.setdefault((path, rest), set()).add(no)
        elif path.endswith(".c") or path.endswith(".h"):
            text = text_of(path)
            for fn in (x.strip() for x in rest.split(",")):
                if not IDENT_RE.match(fn):
                    problems.append(f"{where}: `{path}: {rest}`: '{fn}' is not a function name")
                    continue
                if not re.search(r"\b(?:void|int)\s+" + re.escape(fn) + r"\s*\(", text):
                    problems.append(f"{where}: `{path}: {fn}`: no function {fn} in {path}")
                    continue
                if "cmocka_unit_test" in text and not re.search(r"cmocka_unit_test\w*\(\s*" + re.escape(fn) + r"\b",
                                                                text):
                    problems.append(f"{where}: `{path}: {fn}`: {fn} is not registered in the suite's main(), "
                                    f"so it never runs")
                    continue
                unit_cite_lines.setdefault((path, fn), set()).add(no)
        else:
            problems.append(f"{where}: `{path}: {rest}`: a name can only follow a .sh or .c citation")

    for no, line in enumerate(doc.splitlines(), 1):
        for m in LINK_RE.finditer(line):
            target = m.group(1)
            if re.match(r"^[a-z]+:", target):
                continue
            if not os.path.exists(os.path.normpath(os.path.join(os.path.dirname(doc_path), target))):
                problems.append(f"{DOC}:{no}: link to {target}, which does not exist")

    rows = [r for r in table_rows(doc) if any(h.lower().startswith("tested in") for h in r[2])]
    row_lines = {no for no, _, _ in rows}

    # ---- (a) every expect_fail case is cited ----
    cli_dir = os.path.join(root, CLI_DIR)
    n_cases = 0
    scripts = sorted(f for f in os.listdir(cli_dir) if f.endswith(".sh") and f not in NOT_A_SCENARIO)
    for f in scripts:
        rel = f"{CLI_DIR}/{f}"
        seen = set()
        for no, helper, name in calls(rel):
            if helper != "expect_fail" or name in seen:
                continue
            seen.add(name)
            n_cases += 1
            if not cli_cite_lines.get((rel, name), set()) & row_lines:  # a row of a catalogue table
                shown = name.replace("|", "\\|")
                problems.append(f"{rel}:{no}: expect_fail \"{name}\" is not in {DOC} "
                                f"(add a row citing `{rel}: {shown}`)")

    # ---- (c) every catalogue row cites a test ----
    for no, cells, header in rows:
        if not CITE_RE.search(" ".join(cells)):
            problems.append(f"{DOC}:{no}: catalogue row cites no test location: {' | '.join(cells)[:80]}")

    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} problem(s) in {DOC} ({len(rows)} rows, {n_cases} expect_fail cases in "
              f"{len(scripts)} scripts)")
        return 1
    n_cli = sum(1 for lines in cli_cite_lines.values() if lines & row_lines)
    n_unit = sum(1 for lines in unit_cite_lines.values() if lines & row_lines)
    print(f"{len(rows)} rows, {n_cli} CLI cases cited, {n_unit} unit tests cited")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
