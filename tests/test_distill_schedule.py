"""The distillation-schedule benchmark: schedules are validated and a larger cap on k makes longer teacher solves."""

import json

import pytest
from recipe_utils import tiny_cache

from benchmarks import distill_schedule
from soundctm.nn.unet import UNET_PRESETS, TextUNet, UNetConfig


@pytest.fixture(scope="module")
def bench():
    return distill_schedule


def test_schedules_are_parsed_and_checked(bench):
    assert bench.parse_schedules("40:39,18:2") == [(40, 39), (18, 2)]
    for bad in ("18:18", "18:0", "1:1"):
        with pytest.raises(ValueError, match="N:k_max"):
            bench.parse_schedules(bad)


def test_cap_on_k_sets_the_teacher_solve_length(bench, tmp_path):
    cache = tiny_cache(tmp_path / "cache")
    TextUNet.from_config(UNetConfig.from_dict({**UNET_PRESETS["debug"].__dict__})).save_pretrained(tmp_path / "t")
    out = tmp_path / "result"
    assert bench.main(["--teacher", str(tmp_path / "t"), "--cache-dir", str(cache), "--schedules", "6:1,6:5",
                       "--steps", "3", "--batch", "8", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [(r["N"], r["k_max"]) for r in rows] == [(6, 1), (6, 5)]
    assert rows[0]["k_mean"] == 1.0 and rows[0]["teacher_evals_per_target"] == 1.0
    assert rows[1]["k_mean"] > 1.0
    assert all(r["seconds_per_step"] > 0 for r in rows)
    assert "| 6 | 5 |" in out.with_suffix(".md").read_text()
