import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from pipeline_utils import make_pipeline

from soundctm.pipeline_cli import main


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "model"
    make_pipeline(path)
    return path


def test_generate_writes_wav_and_spectrogram(model, tmp_path, capsys):
    out, png = tmp_path / "a.wav", tmp_path / "a.png"
    rc = main(["a high beep sounding twice", "--model", str(model), "--steps", "2", "--seed", "0", "-o", str(out),
               "--spectrogram", str(png)])
    assert rc == 0
    wave, sr = sf.read(out)
    assert sr == 16000 and wave.shape == (32000,)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "NFE" in capsys.readouterr().out


def test_same_seed_same_file(model, tmp_path):
    for name in ("x.wav", "y.wav"):
        assert main(["a bell", "--model", str(model), "--seed", "3", "-o", str(tmp_path / name)]) == 0
    assert np.array_equal(sf.read(tmp_path / "x.wav")[0], sf.read(tmp_path / "y.wav")[0])


def test_sigmas_option_reaches_the_sampler(model, tmp_path):
    """--sigmas at their default values writes the same file as no --sigmas; other values another."""
    from soundctm.core import schedule

    grid = ",".join(repr(float(v)) for v in schedule.karras_sigmas(3, 0.002, 80.0))
    for name, extra in (("d.wav", []), ("g.wav", ["--sigmas", grid]), ("o.wav", ["--sigmas", "30,1,0.002"])):
        assert main(["a bell", "--model", str(model), "--steps", "2", "--seed", "1", "-o", str(tmp_path / name),
                     *extra]) == 0
    default, same, other = (sf.read(tmp_path / n)[0] for n in ("d.wav", "g.wav", "o.wav"))
    assert np.array_equal(default, same) and not np.array_equal(default, other)


def test_prompts_file_batches(model, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a beep\n\nrain falling\na knock\n")
    out = tmp_path / "gen"
    assert main(["--prompts-file", str(prompts), "--out-dir", str(out), "--model", str(model), "--batch-size", "2",
                 "--seed", "0"]) == 0
    assert sorted(p.name for p in out.glob("*.wav")) == ["0000.wav", "0001.wav", "0002.wav"]
    assert "rain falling" in (out / "prompts.txt").read_text()


@pytest.mark.parametrize("args,needle", [
    (["   "], "prompt"), (["x", "--steps", "0"], "steps"), (["x", "--steps", "1001"], "steps"),
    (["x", "--gamma", "2"], "gamma"), (["x", "--guidance", "-1"], "guidance"), (["x", "--guidance", "nan"], "guidance"),
    (["x", "--num-samples", "0"], "num_samples"), (["x", "-o", "/nonexistent/dir/out.wav"], "output directory"),
    (["x", "--model", "/nonexistent/model"], "does not exist"), ([], "prompt"), (["x", "--steps", "abc"], "steps"),
    (["x", "--sigmas", "80,fast"], "--sigmas must be comma-separated numbers"),
    (["x", "--steps", "2", "--sigmas", "80,0.002"], "sigmas must be steps + 1 = 3"),
])
def test_bad_input_exits_2_with_one_line(model, tmp_path, capsys, args, needle):
    extra = [] if "--model" in args else ["--model", str(model)]
    rc = main(args + extra + ([] if "-o" in args else ["-o", str(tmp_path / "o.wav")]))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_corrupt_model_dir(tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model_index.json").write_text("{}")
    assert main(["x", "--model", str(bad), "-o", str(tmp_path / "o.wav")]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_console_entry_point_reports_errors_without_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "soundctm.cli", "generate", "x", "--gamma", "5"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "gamma" in out.stderr and "Traceback" not in out.stderr
