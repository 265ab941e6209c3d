"""``soundctm train <recipe> [--config FILE] [--set KEY=VALUE ...]``: run a training recipe from recipes/.

A recipe is a script in a source checkout's ``recipes/`` exposing ``main(argv) -> int``; `RECIPES` maps short names
to them, and a path to any such script works too. The recipes and their configs are not part of the installed
package: the command looks in ``./recipes`` (run it from the checkout's root) and then beside the package (an
editable install). Everything after the recipe is passed to the recipe unchanged; multi-process runs use
``accelerate launch recipes/<script>.py ...`` directly.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from soundctm.cli_errors import report

PROG = "soundctm train"
RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"  # a checkout's, when the package is installed from it
USAGE = "usage: soundctm train <recipe> [--config FILE] [--preset NAME] [--set KEY=VALUE ...]"

# short name -> script file in recipes/
RECIPES: dict[str, str] = {
    "vae": "train_vae.py",
    "teacher": "train_teacher.py",
    "soundctm": "train_soundctm.py",
    "image": "train_image.py",
    "toy2d": "toy2d.py",
    "fp-diffusion-toy": "fp_diffusion_toy.py",
    "toy-regression": "train_toy_regression.py",
    "digit-classifier": "train_digit_classifier.py",
    "synthcaps-classifier": "train_synthcaps_classifier.py",
}


def recipes_dir() -> Path:
    """The ``recipes/`` folder of a source checkout: ``./recipes``, else the one beside this package; a
    FileNotFoundError saying where it looked when neither holds the recipes (an install from a wheel)."""
    for folder in (Path.cwd() / "recipes", RECIPES_DIR):
        if (folder / RECIPES["soundctm"]).is_file():
            return folder
    raise FileNotFoundError(f"the recipes live in a source checkout's recipes/ folder, not in the installed package: "
                            f"run this from the checkout's root (looked in {Path.cwd() / 'recipes'} and {RECIPES_DIR})")


def recipe_path(name: str) -> Path:
    """The script of recipe ``name`` (a registered name or a path to a ``.py`` file)."""
    path = Path(name)
    if path.suffix == ".py" and path.is_file():
        return path
    if name in RECIPES:
        return recipes_dir() / RECIPES[name]
    raise ValueError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)} (or a path to a recipe .py)")


def load_recipe(path: Path):
    """Import the recipe script at ``path`` as a module (it must define ``main(argv)``)."""
    spec = importlib.util.spec_from_file_location(f"soundctm_recipe_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclass type hints resolve through sys.modules
    spec.loader.exec_module(module)
    if not callable(getattr(module, "main", None)):
        raise ValueError(f"recipe {path} defines no main(argv)")
    return module


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"], ["--list"]):
        print(USAGE)
        print("recipes: " + ", ".join(f"{n} ({f})" for n, f in RECIPES.items()))
        return 0
    if not argv or argv[0].startswith("-"):
        return report(PROG, ValueError(f"no recipe given; {USAGE}, <recipe> one of {', '.join(RECIPES)} "
                                       "or a path to a recipe .py"))
    try:
        module = load_recipe(recipe_path(argv[0]))
    except (ValueError, FileNotFoundError) as err:
        return report(PROG, err)
    return int(module.main(argv[1:]) or 0)
