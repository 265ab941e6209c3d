"""``soundctm train <recipe> [--config FILE] [--set KEY=VALUE ...]``: run a training recipe from recipes/.

A recipe is a script in ``recipes/`` exposing ``main(argv) -> int``; `RECIPES` maps short names to them, and a
path to any such script works too. Everything after the recipe is passed to the recipe unchanged; multi-process
runs use ``accelerate launch recipes/<script>.py ...`` directly.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"

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


def recipe_path(name: str) -> Path:
    """The script of recipe ``name`` (a registered name or a path to a ``.py`` file)."""
    if name in RECIPES:
        return RECIPES_DIR / RECIPES[name]
    path = Path(name)
    if path.suffix == ".py" and path.is_file():
        return path
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


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "--list"):
        print("usage: soundctm train <recipe> [--config FILE] [--preset NAME] [--set KEY=VALUE ...]")
        print("recipes: " + ", ".join(f"{n} ({f})" for n, f in RECIPES.items()))
        return 0
    try:
        module = load_recipe(recipe_path(argv[0]))
    except ValueError as err:
        print(f"soundctm train: {err}", file=sys.stderr)
        return 2
    return int(module.main(argv[1:]) or 0)
