import torch
from recipe_utils import tiny_cache

from recipes import train_teacher
from soundctm.core.precond import EDMDenoiser
from soundctm.nn.unet import TextUNet
from soundctm.train.tasks import drop_captions

DEBUG_UNET = ["unet.block_out_channels=[8, 16]", "unet.attention=[false, true]", "unet.attention_head_dim=4",
              "unet.norm_num_groups=4"]


def run(tmp_path, *extra):
    cache = tiny_cache(tmp_path / "cache")
    sets = [f"data.cache_dir={cache}", f"train.out_dir={tmp_path / 'run'}", "train.steps=6",
            "train.batch_size=4", "train.ckpt_every=3", "train.log_every=2", "train.tensorboard=false",
            "train.progress=false", *DEBUG_UNET, *extra]
    return train_teacher.main([a for kv in sets for a in ("--set", kv)])


def test_teacher_recipe_trains_exports_and_resumes(tmp_path):
    assert run(tmp_path) == 0
    exported = tmp_path / "run" / "teacher"
    net = TextUNet.from_pretrained(exported).eval()
    assert (exported / "provenance.json").is_file()
    x = torch.randn(2, 4, 8, 12)
    tokens, mask = torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad():
        out = EDMDenoiser(net, 0.5)(x, torch.tensor([0.5, 2.0]), tokens=tokens, mask=mask)
    assert out.shape == x.shape and torch.isfinite(out).all()
    ckpts = sorted(p.name for p in (tmp_path / "run").glob("checkpoints/ckpt-*")) or sorted(
        p.name for p in (tmp_path / "run").rglob("ckpt-*"))
    assert ckpts, "no checkpoint written"
    # resuming a finished run with more steps continues from the last checkpoint
    assert run(tmp_path, "train.steps=8", "train.resume=latest") == 0


def test_bad_config_exits_2(tmp_path, capsys):
    assert train_teacher.main(["--set", "data.cache_dir=/nonexistent/cache"]) == 2
    assert "train_teacher:" in capsys.readouterr().err
    assert train_teacher.main(["--set", "unet.nope=1"]) == 2


def test_caption_dropout_rate_and_replacement():
    g = torch.Generator().manual_seed(0)
    tokens, mask = torch.ones(4000, 3, 2), torch.ones(4000, 3, dtype=torch.bool)
    ut, um = torch.zeros(1, 3, 2), torch.tensor([[True, False, False]])
    t2, m2 = drop_captions(tokens, mask, ut, um, 0.1, g)
    dropped = (t2 == 0).all(-1).all(-1)
    assert 0.08 < dropped.float().mean() < 0.12
    assert torch.equal(m2[dropped], um.expand(int(dropped.sum()), 3))
    assert (t2[~dropped] == 1).all()


def test_teacher_recipe_in_two_processes_then_resume_in_one(tmp_path):
    from pathlib import Path

    import pytest
    from test_multiprocess import ACCELERATE, accelerate_launch

    if not ACCELERATE.exists():
        pytest.skip("accelerate launcher not installed")
    cache = tiny_cache(tmp_path / "cache")
    sets = [f"data.cache_dir={cache}", f"train.out_dir={tmp_path / 'run'}", "train.steps=2", "train.batch_size=4",
            "train.ckpt_every=2", "train.tensorboard=false", "train.progress=false", "train.cpu=true", *DEBUG_UNET]
    args = [a for kv in sets for a in ("--set", kv)]
    accelerate_launch(Path(train_teacher.__file__), *args)
    assert (tmp_path / "run" / "checkpoints" / "ckpt-000002").is_dir()
    assert (tmp_path / "run" / "teacher" / "model.safetensors").is_file()
    # the 2-process checkpoint resumes in one process
    assert train_teacher.main(args + ["--set", "train.steps=3", "--set", "train.resume=latest"]) == 0
    assert (tmp_path / "run" / "checkpoints" / "ckpt-000003").is_dir()
