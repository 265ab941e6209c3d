"""The top-level ``soundctm`` dispatcher and the recipe registry point at things that exist."""

import importlib

import pytest

from soundctm.cli import COMMANDS, main
from soundctm.train.cli import RECIPES, RECIPES_DIR


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_module_has_a_main(name):
    module = importlib.import_module(COMMANDS[name][0])
    assert callable(module.main), f"{COMMANDS[name][0]} has no main(argv)"


def test_every_registered_recipe_file_exists():
    missing = [name for name, script in RECIPES.items() if not (RECIPES_DIR / script).is_file()]
    assert not missing, f"RECIPES names scripts that are not in recipes/: {missing}"
    # and every training script in recipes/ is reachable by a short name
    scripts = {p.name for p in RECIPES_DIR.glob("train_*.py")}
    assert scripts <= set(RECIPES.values()), sorted(scripts - set(RECIPES.values()))


def test_unknown_command_fails_naming_the_choices(capsys):
    assert main(["nonsense"]) == 2
    err = capsys.readouterr().err
    assert "unknown command" in err and "generate" in err
