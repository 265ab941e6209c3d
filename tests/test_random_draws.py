"""One rule for random numbers: a draw with a generator is made on the generator's device and then moved
(soundctm.core.utils), so a seed gives the same numbers on every device and a CPU generator never meets CUDA
tensors. A call that names both a generator and a device draws on the device with the generator: the pattern that
broke the CTM recipe, the image recipe and γ-sampling on CUDA."""

import ast
from pathlib import Path

import torch

from soundctm.core.utils import multinomial, rand, randint, randn

ROOT = Path(__file__).resolve().parents[1]
RANDOM = {"randn", "rand", "randint", "randperm", "multinomial", "normal", "bernoulli", "poisson"}


def test_no_code_draws_with_a_generator_on_a_chosen_device():
    found = []
    for folder in ("soundctm", "recipes", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "soundctm" / "core" / "utils.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                        and node.func.attr in RANDOM and isinstance(node.func.value, ast.Name) \
                        and node.func.value.id == "torch" and {"generator", "device"} <= {k.arg for k in node.keywords}:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, f"draw through soundctm.core.utils instead: {found}"


def test_helpers_give_the_generators_numbers_wherever_the_result_goes():
    def gen():
        return torch.Generator().manual_seed(7)

    assert torch.equal(randn((3, 2), gen(), "cpu"), torch.randn(3, 2, generator=gen()))
    assert torch.equal(rand(4, gen()), torch.rand(4, generator=gen()))
    assert randn((2,), gen(), "meta").device.type == "meta"  # moved to the requested device
    assert torch.equal(randint(0, 9, (5,), gen(), "cpu"), torch.randint(0, 9, (5,), generator=gen()))
    w = torch.tensor([[0.2, 0.8], [0.5, 0.5]])
    assert torch.equal(multinomial(w, 1, generator=gen()), torch.multinomial(w, 1, generator=gen()))
    assert randn((2,), None, "cpu").shape == (2,)
