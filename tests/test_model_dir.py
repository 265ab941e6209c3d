"""One save/load for dataclass-configured nets: the bundled folders load and are written back byte for byte."""

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from soundctm.metrics.digits import DigitClassifier
from soundctm.metrics.synthcaps_classifier import SynthCapsClassifier
from soundctm.nn.image import ImageUNet
from soundctm.nn.model_dir import CONFIG_FILE, WEIGHTS_FILE, NotAModelDir, load_model_dir, save_model_dir

PRETRAINED = Path(__file__).resolve().parents[1] / "soundctm" / "pretrained"
BUNDLED = [(DigitClassifier, "digits/classifier"), (ImageUNet, "digits/teacher"), (ImageUNet, "digits/ctm_l2"),
           (SynthCapsClassifier, "synthcaps-classifier")]


@dataclass(frozen=True)
class LinearConfig:
    dim: int = 3


class Linear(nn.Module):
    def __init__(self, config: LinearConfig):
        super().__init__()
        self.config, self.lin = config, nn.Linear(config.dim, 1)


def test_round_trip_and_missing_folder(tmp_path):
    net = Linear(LinearConfig(dim=5))
    assert save_model_dir(net, tmp_path / "m") == tmp_path / "m"
    loaded = load_model_dir(tmp_path / "m", lambda d: Linear(LinearConfig(**d)))
    assert loaded.config == net.config and torch.equal(loaded.lin.weight, net.lin.weight)
    for error in (NotAModelDir, FileNotFoundError, ValueError):  # file code and CLIs both catch it
        with pytest.raises(error, match="not a model directory"):
            load_model_dir(tmp_path / "missing", lambda d: Linear(LinearConfig(**d)))


@pytest.mark.parametrize(("cls", "name"), BUNDLED)
def test_bundled_folders_load_and_save_back_the_same_files(tmp_path, cls, name):
    src = PRETRAINED / name
    net = cls.from_pretrained(src)
    assert not net.training
    net.save_pretrained(tmp_path)
    assert (tmp_path / CONFIG_FILE).read_text() == (src / CONFIG_FILE).read_text()
    saved, bundled = load_file(tmp_path / WEIGHTS_FILE), load_file(src / WEIGHTS_FILE)
    assert saved.keys() == bundled.keys() and all(torch.equal(saved[k], bundled[k]) for k in saved)
