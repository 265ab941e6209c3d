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


def test_train_without_a_recipe_exits_2_with_a_usage_line(capsys):
    from soundctm.train import cli as train_cli

    assert train_cli.main([]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "usage: soundctm train <recipe>" in err and "soundctm" in err
    assert train_cli.main(["--list"]) == 0 and "toy-regression" in capsys.readouterr().out


def test_train_outside_a_checkout_says_it_needs_one(tmp_path, monkeypatch, capsys):
    from soundctm.train import cli as train_cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train_cli, "RECIPES_DIR", tmp_path / "site-packages" / "recipes")
    assert train_cli.main(["soundctm"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "source checkout's recipes/ folder" in err and str(tmp_path) in err


def test_train_finds_the_recipes_of_the_checkout_it_runs_in(tmp_path, monkeypatch):
    from soundctm.train import cli as train_cli

    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / RECIPES["soundctm"]).write_text("def main(argv):\n    return 0\n")
    monkeypatch.chdir(tmp_path)
    assert train_cli.recipe_path("soundctm") == tmp_path / "recipes" / RECIPES["soundctm"]
    assert train_cli.main(["soundctm"]) == 0


def test_every_command_reports_bad_options_in_one_line(capsys):
    for name in COMMANDS:
        assert main([name, "--no-such-option"]) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"soundctm {name}: error:" in err, (name, err)


def test_cache_names_an_unavailable_device(tmp_path, monkeypatch, capsys):
    import torch

    from soundctm.data import cache
    from soundctm.pipeline import DEFAULT_MODEL

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["--data", "synthcaps", "--vae", str(DEFAULT_MODEL / "vae"), "--out", str(tmp_path), "--device", "cuda"]
    assert cache.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == "soundctm cache: error: --device 'cuda' is not available on this machine; available: cpu"


def test_cli_errors_helpers(capsys):
    import warnings

    from soundctm.cli_errors import CliError, HelpFormatter, Parser, first_line, one_line_warnings, report

    p = Parser(prog="soundctm x", formatter_class=HelpFormatter)
    p.add_argument("--n", type=int, default=3, help="how many")
    p.add_argument("--name", default=None, help="a name (default: none)")
    with pytest.raises(CliError, match="--n: invalid int value"):
        p.parse_args(["--n", "x"])
    assert "how many (default: 3)" in p.format_help() and "(default: None)" not in p.format_help()
    assert first_line(ValueError("\n  first\nsecond")) == "first" and first_line(KeyError()) == "KeyError"
    assert report("soundctm x", ValueError("bad --n\nmore")) == 2
    assert capsys.readouterr().err == "soundctm x: error: bad --n\n"
    with one_line_warnings("soundctm x"):
        warnings.warn("careful\nsecond line", UserWarning, stacklevel=1)
    assert capsys.readouterr().err == "soundctm x: warning: careful\n"
