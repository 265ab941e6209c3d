"""Result names keep dotted stems; atomic writes either replace the file whole or leave it as it was."""

import json

import pytest

from benchmarks import distill_schedule
from soundctm.fileio import atomic_path, atomic_write_text, with_extension


def test_with_extension_keeps_dots_in_the_stem():
    assert with_extension("r/goals_nu1.5_seed8", ".md").name == "goals_nu1.5_seed8.md"
    assert with_extension("r/goals_nu1.5_seed8", ".json").name == "goals_nu1.5_seed8.json"
    assert with_extension("r/goals.md", ".json").name == "goals.json"  # a result ending is replaced
    assert with_extension("r/plot.png", ".md").name == "plot.md"
    assert with_extension("r/goals", ".md").parent.name == "r"
    with pytest.raises(ValueError, match="ext must start with a dot"):
        with_extension("r/goals", "md")


def test_atomic_path_replaces_only_on_success(tmp_path):
    path = tmp_path / "sub" / "table.json"
    atomic_write_text(path, "first")
    assert path.read_text() == "first"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert path.read_text() == "first"  # the old file survives a failed writer
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with atomic_path(path):
            pass
    assert path.read_text() == "first"
    with atomic_path(path) as tmp:
        assert tmp.parent == path.parent and tmp != path
        tmp.write_text("second")
    assert path.read_text() == "second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["table.json"]  # no temporary file left behind


def test_a_benchmark_with_a_dotted_out_writes_both_files_under_the_full_name(tmp_path):
    bench = distill_schedule
    rows = [{"N": 18, "k_max": 2, "pairs": False, "k_mean": 1.5, "teacher_evals_per_target": 2.0,
             "seconds_per_step": 1.0}]
    bench.write(rows, tmp_path / "sched_k1.5", "cmd", 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sched_k1.5.json", "sched_k1.5.md"]
    assert json.loads((tmp_path / "sched_k1.5.json").read_text())["rows"] == rows
