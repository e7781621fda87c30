"""README stays true to the code: its commands exist and every config field is documented."""

import dataclasses
import re

from conftest import ROOT
from config import Config

README = (ROOT / "README.md").read_text()


def test_every_config_field_is_in_the_readme_table_with_its_default():
    for field in dataclasses.fields(Config):
        row = re.search(rf"^\| `{field.name}` \| `([^`]*)` \|", README, re.MULTILINE)
        assert row, f"config field {field.name} is missing from README's table"
        assert eval(row.group(1)) == field.default, f"README gives {field.name} = {row.group(1)}"


def test_the_first_commands_are_install_and_train_then_the_tests():
    block = re.search(r"## Quick start\s+```bash\n(.*?)```", README,
                      re.DOTALL).group(1).splitlines()
    assert block[0].startswith("pip install -r requirements.txt && python -m tools.demo && python "
                               "train.py --demo")
    assert block[1].startswith("python -m pytest -q")
    assert "python -m pytest -q" in (ROOT / ".ci/run").read_text().splitlines()[-1]
