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
    (["x", "--num-samples", "0"], "num_samples"), (["x", "--model", "/nonexistent/model"], "does not exist"),
    ([], "prompt"), (["x", "--steps", "abc"], "steps"),
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


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_output_folder_is_created_and_an_impossible_one_is_named(model, tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "a.wav"
    assert main(["a bell", "--model", str(model), "-o", str(out)]) == 0 and out.is_file()
    blocker = tmp_path / "file.txt"
    blocker.write_text("")
    assert main(["a bell", "--model", str(model), "-o", str(blocker / "a.wav")]) == 2
    assert "output directory" in one_line_error(capsys)


@pytest.mark.parametrize("suffix,fmt", [(".wav", "WAV"), (".flac", "FLAC"), (".ogg", "OGG"), (".mp3", "MP3")])
def test_output_is_written_in_the_format_its_extension_names(model, tmp_path, suffix, fmt):
    out = tmp_path / f"a{suffix}"
    assert main(["a bell", "--model", str(model), "--seed", "0", "-o", str(out)]) == 0
    assert sf.info(out).format == fmt and sf.info(out).samplerate == 16000


@pytest.mark.parametrize("name", ["a.mp4", "a.txt", "a"])
def test_an_extension_with_no_audio_format_is_refused(model, tmp_path, capsys, name):
    assert main(["a bell", "--model", str(model), "-o", str(tmp_path / name)]) == 2
    err = one_line_error(capsys)
    assert "-o/--output" in err and ".wav, .flac, .ogg, .mp3" in err
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("extra,needle", [
    (["a beep"], "a positional prompt"), (["-o", "x.wav"], "-o/--output"),
    (["--spectrogram", "x.png"], "--spectrogram"),
])
def test_prompts_file_refuses_a_prompt_output_or_spectrogram(model, tmp_path, capsys, extra, needle):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a beep\n")
    assert main(["--prompts-file", str(prompts), "--model", str(model), "--out-dir", str(tmp_path / "g"), *extra]) == 2
    err = one_line_error(capsys)
    assert "--prompts-file" in err and needle in err and not (tmp_path / "g" / "0000.wav").exists()


def test_help_shows_defaults_what_the_model_knows_and_gamma_at_one_step(capsys):
    from soundctm.pipeline_cli import build_parser

    parser = build_parser()
    undocumented = [a.dest for a in parser._actions if not a.help]
    assert not undocumented, undocumented
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 1)" in text and "(default: synthcaps-tiny)" in text and "(default: cpu)" in text
    assert "beep, buzzer, bell" in text and "a dog barking" in text
    assert "no effect at --steps 1" in text
    assert main(["--help"]) == 0


@pytest.mark.parametrize("args,note", [
    (["--gamma", "0.5"], "--gamma has no effect at --steps 1"),
    (["--gamma", "0.5", "--steps", "2", "--sampler", "teacher"], "--gamma has no effect with --sampler teacher"),
    (["--gamma", "0.5", "--steps", "2"], None), (["--gamma", "0"], None),
])
def test_a_note_when_gamma_cannot_act(model, tmp_path, capsys, args, note):
    assert main(["a bell", "--model", str(model), "-o", str(tmp_path / "a.wav"), *args]) == 0
    err = capsys.readouterr().err
    if note is None:
        assert "gamma" not in err
    else:
        assert sum(note in line for line in err.splitlines()) == 1


def test_bundled_model_by_name_from_any_folder_and_unknown_sounds_warn(tmp_path, monkeypatch, capsys):
    """--model synthcaps-tiny works outside the repository; 'a dog barking' warns in one line, a beep does not."""
    monkeypatch.chdir(tmp_path)
    assert main(["a dog barking", "--model", "synthcaps-tiny", "-o", "dog.wav", "--seed", "0"]) == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("soundctm generate: warning: prompt 'a dog barking' names none of the sounds")
    assert len(err.splitlines()) == 1 and "beep" in err
    assert main(["a high beep sounding twice", "-o", "beep.wav", "--seed", "0"]) == 0
    assert capsys.readouterr().err == "" and (tmp_path / "beep.wav").is_file()


def test_a_model_that_is_neither_a_folder_nor_a_bundled_name_lists_the_bundled_names(capsys, tmp_path):
    assert main(["a beep", "--model", "synthcaps-huge", "-o", str(tmp_path / "a.wav")]) == 2
    assert "bundled: synthcaps-tiny" in one_line_error(capsys)


@pytest.mark.parametrize("device", ["cuda", "cuda:3", "banana"])
def test_an_unavailable_device_is_named_with_what_is_available(model, tmp_path, capsys, monkeypatch, device):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["a beep", "--model", str(model), "--device", device, "-o", str(tmp_path / "a.wav")]) == 2
    err = one_line_error(capsys)
    assert f"--device {device!r} is not available" in err and "available: cpu" in err


def truncated_copy(model, tmp_path, part):
    import shutil

    copy = tmp_path / f"broken-{part}"
    shutil.copytree(model, copy)
    weights = copy / part / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return copy, weights


def test_a_truncated_student_file_is_named_in_one_line(model, tmp_path, capsys):
    broken, weights = truncated_copy(model, tmp_path, "student")
    assert main(["a beep", "--model", str(broken), "-o", str(tmp_path / "a.wav")]) == 2
    err = one_line_error(capsys)
    assert str(weights) in err and "corrupt or incomplete" in err


def test_a_truncated_teacher_breaks_only_the_teacher_sampler(model, tmp_path, capsys):
    broken, weights = truncated_copy(model, tmp_path, "teacher")
    assert main(["a beep", "--model", str(broken), "-o", str(tmp_path / "a.wav")]) == 0
    assert main(["a beep", "--model", str(broken), "--sampler", "teacher", "-o", str(tmp_path / "b.wav")]) == 2
    assert str(weights) in one_line_error(capsys)


@pytest.mark.parametrize("flag,shown", [(["--progress"], True), (["--no-progress"], False), ([], False)])
def test_progress_bar_on_stderr_when_asked_off_when_not_a_terminal(model, tmp_path, capsys, flag, shown):
    assert main(["a bell", "--model", str(model), "--steps", "3", "-o", str(tmp_path / "a.wav"), *flag]) == 0
    err = capsys.readouterr().err
    assert ("generating" in err and "/3 [" in err) == shown  # a 3-step bar


def test_a_10000_character_prompt_is_one_warning_line(model, tmp_path, capsys):
    assert main(["a bell " * 1430, "--model", str(model), "-o", str(tmp_path / "a.wav")]) == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("soundctm generate: warning: prompt truncated to its first 256 of")
    assert len(err.splitlines()) == 1
