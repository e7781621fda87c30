"""README, docs and config.py stay true to the code: the first commands, every field documented
once, every link resolves, every command shown parses with its own parser's flags, and the tables
name the modules there are."""

import dataclasses
import functools
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from conftest import ROOT
from config import Config
from test_layout import CORE, imported_modules

README = (ROOT / "README.md").read_text()


def test_every_config_field_has_its_meaning_beside_it():
    # config.py is the reference the README points to: each field `name: type = default  # meaning`
    source = (ROOT / "config.py").read_text()
    for field in dataclasses.fields(Config):
        line = re.search(rf"^    {field.name}: \w+ = (.+?)  # (.+)$", source, re.MULTILINE)
        assert line, f"config field {field.name} has no `# meaning` comment on its line"
        assert eval(line.group(1)) == field.default, f"{field.name}: default on its line differs"
        assert len(line.group(2)) > 3, f"{field.name}: say what it means"


def test_readme_points_to_the_config_and_names_the_knobs_users_tune():
    section = README[README.index("## Configuration"):]
    assert "config.py" in section and "--lambda_l1" in section and "--help" in section


def test_the_first_commands_are_install_and_train_then_the_tests():
    block = re.search(r"## Quick start\s+```bash\n(.*?)```", README,
                      re.DOTALL).group(1).splitlines()
    assert block[0].startswith("pip install -r requirements.txt && python -m tools.demo && python "
                               "train.py --demo")
    assert block[1].startswith("python -m pytest -q")


def test_ci_runs_exactly_the_readme_test_command_in_a_virtual_environment_it_makes():
    block = re.search(r"## Quick start\s+```bash\n(.*?)```", README, re.DOTALL).group(1)
    test_command = block.splitlines()[1].split("#")[0].strip()
    steps = [line for line in (ROOT / ".ci/run").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert steps[-1] == test_command  # the very command, last: its exit status is CI's
    # ...with the python of a virtual environment made anew, filled from the requirements files
    # alone (nothing installed by hand on the machine can make a test pass)
    venv = steps.index('python3 -m venv --clear "$venv"')
    assert steps[venv + 1] == '. "$venv/bin/activate"'
    install = " ".join(steps[venv + 2:venv + 4])
    assert install.startswith("python -m pip install ")
    assert re.findall(r"-r (\S+)", install) == ["requirements.txt", "requirements-optional.txt",
                                                "requirements-dev.txt"]
    assert steps.index("ruff check .") < steps.index("mypy") < len(steps) - 1  # before the tests


# ----------------------------------------------------------------- links and commands of the docs

PAGES = [ROOT / "README.md", ROOT / "tools" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")  # [text](target) and ![alt](image)


def without_code(text: str) -> str:
    """The prose of a page: a link inside a code block, inline code or a comment is no link."""
    text = re.sub(r"```.*?```|<!--.*?-->", "", text, flags=re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(page: Path) -> set:
    """The #anchors GitHub makes of a page's headings."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return {re.sub(r"[^\w\- ]", "", title.replace("`", "").lower()).replace(" ", "-")
            for title in re.findall(r"^#{1,6} (.+?)\s*$", text, re.MULTILINE)}


def test_every_relative_link_and_image_of_the_docs_resolves():
    assert len(PAGES) > 3  # README, tools/README and the docs pages
    checked = 0
    for page in PAGES:
        for target in LINK.findall(without_code(page.read_text())):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)}: link {target}"
            assert resolved.is_relative_to(ROOT) and resolved.exists(), f"{where}: no such file"
            if anchor and resolved.suffix == ".md":
                assert anchor in anchors(resolved), f"{where}: no such heading"
            checked += 1
    assert checked > 20


FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
HEREDOC = re.compile(r"<<-?\s*'?(\w+)'?(.*?)\n.*?^\1$", re.DOTALL | re.MULTILINE)
ASSIGNMENT = re.compile(r"[A-Za-z_]\w*=")


def python_commands(script: str) -> list:
    """[target, *args] of each command of a shell script that runs this repository's python, lines
    continued with a backslash joined, comments and here-documents dropped, the variables
    assigned before ($R, ${R}) expanded and split into words as the shell splits them."""
    variables, found = {}, []
    for line in HEREDOC.sub(r"\2", script).replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        try:
            words = list(lexer)
        except ValueError:  # a quote left open: a python -c program over several lines
            continue
        command = []
        for word in [*words, ";"]:
            if word.strip(";&|"):  # a word, not a separator
                new = re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m[1], m[0]), word)
                command += [new] if new == word or ASSIGNMENT.match(word) else new.split()
                continue
            if command and all(ASSIGNMENT.match(w) for w in command):
                variables.update(w.split("=", 1) for w in command)
            found += filter(None, [python_argv(command)])
            command = []
    return found


def python_argv(command: list):
    """[target, *args] of `python SCRIPT.py`, `python -m tools.X` and `torchrun ... train.py`
    (target: 'infer.py' or '-m tools.data'), else None."""
    for k, word in enumerate(command):
        rest = command[k + 1:]
        if word == "torchrun":  # its own flags, then the script
            rest = rest[next((j for j, w in enumerate(rest) if w.endswith(".py")), 0):]
        elif word not in ("python", "python3"):
            continue
        if rest[:1] == ["-m"] and rest[1:2] and rest[1].startswith("tools."):
            return [f"-m {rest[1]}", *rest[2:]]
        return rest if rest and rest[0].endswith(".py") and (ROOT / rest[0]).is_file() else None
    return None


def shown_commands() -> dict:
    """{page: [[target, *args], ...]}: every python command of the shell blocks and of the inline
    code of README.md, tools/README.md and docs/."""
    shown = {}
    for page in PAGES:
        text = page.read_text()
        blocks = [code for language, code in FENCE.findall(text) if language in ("", "bash", "sh")]
        spans = re.findall(r"`([^`]+)`", FENCE.sub("", text))
        shown[page.relative_to(ROOT)] = [
            *(argv for block in blocks for argv in python_commands(block)),
            *(argv for span in spans if re.search(r"\b(python|torchrun) ", span)
              for argv in python_commands(span.replace("\n", " ")))]
    return shown


# Builds each command's argparse parser in one fresh interpreter as `python ...` would (runpy, as
# __main__, torch imported once), catches it at parse_args and parses the documented arguments with
# it: the flags it names, what it leaves over, the error it raises and its description.
PARSER_RUNNER = """
import argparse, json, runpy, sys

class Built(Exception):
    pass

def built(parser, *args, **kwargs):
    raise Built(parser)

def error(parser, message):
    raise ValueError(message)

argparse.ArgumentParser.parse_args, argparse.ArgumentParser.error = built, error

def parser_of(target, argv):
    sys.argv = [target.split()[-1], *argv]
    try:
        if target.startswith("-m "):
            runpy.run_module(target[3:], run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(target, run_name="__main__")
    except Built as e:
        return e.args[0]
    except BaseException:
        return None

def options(parser):
    return {option for action in parser._actions for option in action.option_strings}

results = []
for target, *args in json.loads(sys.argv[1]):
    parser, command = parser_of(target, []), target
    if parser is None and args:  # a command chosen by its first word (completion.py train)
        parser, command, args = parser_of(target, args[:1]), f"{target} {args[0]}", args[1:]
    if parser is None:
        results.append({"command": command, "error": "no argparse parser"})
        continue
    subs = [a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    sub = subs[0].get(args[0]) if subs and args else None
    command += f" {args[0]}" if sub else ""
    named = options(parser) | options(sub or parser)
    args = [arg.strip("[]") for arg in args]  # [--eval]: optional
    try:
        extra, problem = parser.parse_known_args(args)[1], ""
    except (ValueError, SystemExit) as e:  # SystemExit: --help
        extra, problem = [], str(e)
    for each in [parser, *(subs[0].values() if subs else [])]:
        each.format_help()  # a help string that cannot be formatted fails here
    results.append({"command": command, "extra": extra, "problem": problem,
                    "unknown": [a.split("=")[0] for a in args
                                if a[:1] == "-" and a.split("=")[0] not in named],
                    "descriptions": [p.description for p in (parser, sub) if p and p.description]})
print(json.dumps(results))
"""


@functools.cache
def parsed_commands() -> tuple:
    """(page, argv, what PARSER_RUNNER found) of every python command the docs show."""
    shown = shown_commands()
    argvs = [argv for commands in shown.values() for argv in commands]
    result = subprocess.run([sys.executable, "-c", PARSER_RUNNER, json.dumps(argvs)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    found = iter(json.loads(result.stdout.splitlines()[-1]))
    return tuple((page, argv, next(found)) for page, commands in shown.items() for argv in commands)


def test_every_command_the_docs_show_parses_with_the_flags_its_parser_names():
    checked = parsed_commands()
    assert {"train.py", "infer.py", "-m tools.demo", "-m tools.app", "-m tools.data download",
            "-m tools.data subset", "-m tools.evaluate", "completion.py train",
            "-m tools.variants"} <= {found["command"] for _, _, found in checked}
    for page, argv, found in checked:
        where = f"{page}: python {' '.join(argv)}"
        assert "error" not in found, f"{where}: {found.get('error')}"
        assert not found["unknown"], f"{where}: {found['command']} has no {found['unknown']}"
        assert not found["extra"], f"{where}: unrecognized arguments {found['extra']}"
        problem = found["problem"]
        # allowed: --help itself, a loop variable for a number ($N), a command named bare in prose
        assert (problem in ("", "0") or re.search(r"invalid \w+ value: '\$\w+'", problem)
                or " ".join(argv) == found["command"] and "required" in problem), \
            f"{where}: {problem}"


def test_every_command_describes_itself_in_a_whole_sentence():
    for page, argv, found in parsed_commands():
        assert found["descriptions"], f"python {found['command']} --help: no description"
        for description in found["descriptions"]:
            assert description.endswith("."), \
                f"python {found['command']} --help: description {description!r} is cut short"


def test_the_layout_table_names_every_core_module():
    table = README[README.index("## Layout"):README.index("## Docs")]
    assert set(re.findall(r"^\| `(\w+)\.py` \|", table, re.MULTILINE)) == set(CORE)


def test_tools_readme_names_the_core_modules_the_tools_import():
    text = (ROOT / "tools" / "README.md").read_text()
    named = re.search(r"between them they import every core module but `(\w+)`:(.*?)\. ", text,
                      re.DOTALL)
    imported = set().union(*map(imported_modules, (ROOT / "tools").glob("*.py"))) & set(CORE)
    assert set(re.findall(r"`(\w+)`", named[2])) == imported == set(CORE) - {named[1]}


def test_every_page_that_reads_the_hand_sketches_says_where_they_come_from():
    section = (ROOT / "docs" / "sketches.md").read_text().split("## The hand sketches")[1]
    assert "zoeyangdw/FG-SBIR" in section.split("\n## ")[0] and "NNN-k.jpg" in section
    for page, commands in shown_commands().items():
        if any("data/hand-sketches" in word for argv in commands for word in argv):
            assert page.name == "sketches.md" or "sketches.md#the-hand-sketches" in (
                ROOT / page).read_text(), f"{page}: reads data/hand-sketches without saying how"
