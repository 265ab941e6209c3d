"""The digits restoration recipe: every task end to end, DDRM with the CTM student against the plain fill, blind
GibbsDDRM's width estimate, and one-line argument errors."""

import pytest
import torch

from recipes import restore_digits as RD


def run_main(argv) -> int:
    try:
        return RD.main(argv)
    except SystemExit as exit_:
        return exit_.code


@pytest.mark.parametrize("task,method", [("inpaint", "ddrm"), ("sr", "mpgd"), ("deblur", "dps"),
                                         ("deblur_blind", "gibbs"), ("denoise", "ddrm")])
def test_recipe_writes_a_grid_for_every_task(task, method, tmp_path, capsys):
    out = tmp_path / f"{task}.png"
    assert run_main(["--task", task, "--method", method, "--model", "student", "--steps", "2", "--n", "3",
                     "--out", str(out)]) == 0
    assert out.stat().st_size > 100 and out.read_bytes()[:4] == b"\x89PNG"
    assert "PSNR" in capsys.readouterr().out


def test_student_ddrm_inpainting_beats_the_mean_fill():
    x, _ = RD.held_out(24, 400)
    out = RD.restore("inpaint", "ddrm", "student", 4, x, seed=0)
    fill = RD.baselines(out.problem, *RD.gaussian_prior(x))["mean fill"]
    restored, plain = RD.psnr_db(out.x, x).mean(), RD.psnr_db(fill, x).mean()
    assert restored > plain + 0.5, (restored, plain)
    observed = out.problem.mask.flatten()
    assert (out.x.flatten(1)[:, observed] - x.flatten(1)[:, observed]).abs().mean() < 0.1  # keeps the measured half


def test_blind_deblurring_moves_the_width_towards_the_truth():
    x, _ = RD.held_out(8, 400)
    out = RD.restore("deblur_blind", "gibbs", "teacher", 20, x, seed=0)
    start_error = abs(RD.BLIND_START - RD.BLUR_WIDTH)
    assert (out.width - RD.BLUR_WIDTH).abs().median() < 0.3 * start_error, out.width
    assert torch.isfinite(out.x).all()


@pytest.mark.parametrize("argv", [
    ["--task", "sr", "--method", "replace", "--model", "teacher", "--steps", "2"],
    ["--task", "deblur", "--method", "gibbs", "--model", "teacher", "--steps", "2"],
    ["--task", "inpaint", "--method", "ddrm", "--model", "teacher", "--steps", "0"],
    ["--task", "paint", "--method", "ddrm", "--model", "teacher", "--steps", "2"],
    ["--task", "inpaint", "--method", "ddrm", "--model", "teacher", "--steps", "2", "--n", "100000"],
])
def test_bad_arguments_exit_2_with_one_line(argv, tmp_path, capsys):
    assert run_main([*argv, "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("restore_digits: ") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x.png").exists()
