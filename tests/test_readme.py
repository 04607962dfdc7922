"""README.md is a user's guide that stays true: short, every command it names is a real one
whose `--help` runs, its command table lists every command, and every relative link or
picture in README.md and docs/*.md points at a file (and a heading) that exists.

The two set-up commands (`make demo`, `make test`) are run by CI (.ci/run), not here."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ig_llm import cli

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_LINES = 300

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
# `python -m ig_llm train`, `blender --command ig_llm train`, `ig_llm evaluate` — not
# `ig_llm.training…`, `ig_llm-0.1.0.zip`, `bl_ext.….ig_llm` or a placeholder like `<command>`
COMMAND = re.compile(r"(?<![\w./-])ig_llm\s+([a-z][a-z0-9-]*)\b")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def code_text(markdown: str) -> list[str]:
    """The code of a Markdown text: fenced blocks, indented blocks and inline code spans."""
    chunks = [m.group(0) for m in FENCE.finditer(markdown)]
    prose = FENCE.sub("", markdown)
    block, previous_blank = [], True
    for line in prose.splitlines():
        indented = line.startswith("    ") or line.startswith("\t")
        if indented and (block or previous_blank):
            block.append(line)
        elif block and not line.strip():
            block.append(line)
        else:
            if block:
                chunks.append("\n".join(block))
                block = []
        previous_blank = not line.strip()
    if block:
        chunks.append("\n".join(block))
    chunks += [m.group(2) for m in INLINE_CODE.finditer(prose)]
    return chunks


def commands_named(markdown: str) -> set[str]:
    return {m.group(1) for chunk in code_text(markdown) for m in COMMAND.finditer(chunk)}


def command_table(markdown: str) -> set[str]:
    """The commands in the first column of the table under '## Command line'."""
    section = markdown.split("\n## Command line", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            first = line.split("|")[1]
            names |= set(re.findall(r"`([a-z][a-z0-9-]*)`", first))
    return names


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[|\]\([^)]*\)", "", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen, out = {}, set()
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            out.add(s if n == 0 else f"{s}-{n}")
    return out


def relative_links(path: Path) -> list[str]:
    prose = INLINE_CODE.sub("", FENCE.sub("", path.read_text(encoding="utf-8")))
    return [t for t in LINK.findall(prose)
            if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]   # http:, https:, mailto: ...


MARKDOWN_FILES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_COMMANDS = sorted(commands_named(README.read_text(encoding="utf-8")))
# every command the README names, in code or in its command table, is run (its --help) below
HELP_COMMANDS = sorted((set(README_COMMANDS) | command_table(README.read_text(encoding="utf-8"))) & set(cli.COMMANDS))


def test_readme_is_at_most_300_lines():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"README.md has {lines} lines; move detail to docs/ (at most {MAX_LINES})"


def test_the_parsers_find_what_they_should():
    text = ("Run `python -m ig_llm train --help`, not `ig_llm.training.data.augment` or `ig_llm-0.1.0.zip`,\n"
            "or `blender --command ig_llm\n  predict`.\n\n    python -m ig_llm home\n"
            "    python -m ig_llm <command> --help\n\nprose ig_llm build is not code\n")
    assert commands_named(text) == {"train", "predict", "home"}
    assert slug("`train-default`: the shipped recipe") == "train-default-the-shipped-recipe"
    assert slug("What 95 % count would take: the data curve") == "what-95--count-would-take-the-data-curve"


def test_readme_names_commands_and_its_table_lists_every_command():
    text = README.read_text(encoding="utf-8")
    assert README_COMMANDS, "README.md names no `python -m ig_llm <command>`"
    unknown = sorted(set(README_COMMANDS) - set(cli.COMMANDS))
    assert not unknown, f"README.md names commands the CLI does not have: {unknown}"
    table = command_table(text)
    assert table == set(cli.COMMANDS), (f"README's command table: missing {sorted(set(cli.COMMANDS) - table)}, "
                                        f"unknown {sorted(table - set(cli.COMMANDS))}")


@pytest.mark.parametrize("command", HELP_COMMANDS)
def test_each_command_the_readme_names_answers_help(command, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ig_llm", command, "--help"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"ig_llm {command}" in proc.stdout
    assert not any(tmp_path.iterdir()), "--help wrote files"


@pytest.mark.parametrize("path", MARKDOWN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_pictures_exist(path):
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    assert not broken, f"{path.relative_to(ROOT)}: broken links: {broken}"
