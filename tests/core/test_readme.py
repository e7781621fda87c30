"""README, docs and config.py stay true to the code: the first commands, every field documented
once, every link resolves and every command shown answers --help."""

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT
from config import Config

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
# python train.py, python -m tools.data download: a script or tool, then perhaps its subcommand
COMMAND = re.compile(r"\bpython (-m tools\.\w+|\w+\.py)(?: ([a-z]+)(?=[\s`'\"]|$))?", re.MULTILINE)


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


def shown_commands() -> list:
    """Every distinct python command the README, tools/README and docs show, as argv lists."""
    commands = set()
    for page in PAGES:
        for target, sub in COMMAND.findall(page.read_text()):
            commands.add((target, sub))
    return sorted([*target.split(), *([sub] if sub else [])] for target, sub in commands)


# runs each command's --help in this one fresh interpreter as `python ...` would (runpy, as
# __main__), so torch is imported once: one process per command costs ~4 s of CPU each
HELP_RUNNER = """
import contextlib, io, json, runpy, sys, warnings
warnings.simplefilter("ignore")
results = {}
for argv in json.loads(sys.argv[1]):
    out, code = io.StringIO(), None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            if argv[0] == "-m":
                sys.argv = [argv[1], *argv[2:], "--help"]
                runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
            else:
                sys.argv = [*argv, "--help"]
                runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as e:
        code = e.code
    except BaseException as e:
        code = f"{type(e).__name__}: {e}"
    results[" ".join(argv)] = [code, out.getvalue()[:200]]
print(json.dumps(results))
"""


def test_every_command_the_docs_show_answers_help():
    commands = shown_commands()
    names = {" ".join(argv) for argv in commands}
    assert {"train.py", "infer.py", "-m tools.demo", "-m tools.app", "-m tools.data download",
            "-m tools.evaluate", "completion.py train"} <= names, names
    result = subprocess.run([sys.executable, "-c", HELP_RUNNER, json.dumps(commands)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    answers = json.loads(result.stdout.splitlines()[-1])
    for name, (code, shown) in answers.items():
        assert code in (0, None) and shown.startswith("usage:"), \
            f"python {name} --help: exit {code}, printed {shown!r}"
