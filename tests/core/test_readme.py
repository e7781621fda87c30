"""README and config.py stay true to the code: the first commands, every field documented once."""

import dataclasses
import re

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

