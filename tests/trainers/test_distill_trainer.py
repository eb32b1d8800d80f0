"""The distillation trainer (seed 002) on a tiny random 16-px generator: losses and lr schedule,
a tiny run that lowers the validation loss, the run directory and a bit-exact resume through the
command line, and flag errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from studio.core.distill import load_student
from studio.core.formats import safe_torch_load, stylestudio_fmt
from studio.core.formats.base import ModelBundle
from studio.core.nets.stylegan2 import Generator
from trainers.common import UserError
from trainers.distill import (
    SIZES,
    DistillConfig,
    DistillTrainer,
    MultiscaleDiscriminator,
    feature_matching,
    gan_loss,
    get_lr,
    main,
    parse_args,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def gen_file(tmp_path_factory):
    torch.manual_seed(0)
    G = Generator(z_dim=32, w_dim=32, img_resolution=16, mapping_layers=2, channel_base=256, channel_max=32)
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(2000, 32)).mean(0))
    path = tmp_path_factory.mktemp("gen") / "tiny-g.safetensors"
    stylestudio_fmt.save(ModelBundle(format="stylestudio", path="", generator=G, meta={"licence": "test"}), path)
    return path


def tiny_cfg(gen_file, **kw) -> DistillConfig:
    cfg = DistillConfig(generator=str(gen_file), size="tiny", **SIZES["tiny"], batch=4, lr=1e-3, decay_fraction=0.0,
                        val_triplets=8, eval_every=1000, log_every=2, snapshot_every=0, threads=1, steps=100)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def _records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]


def test_losses_and_lr_schedule():
    p = [[torch.zeros(2, 4), torch.full((2, 1, 3, 3), 0.5)]]
    assert float(gan_loss(p, True, "lsgan", for_d=True)) == pytest.approx(0.25)
    assert float(gan_loss(p, False, "lsgan", for_d=True)) == pytest.approx(0.25)
    assert float(gan_loss(p, True, "hinge", for_d=True)) == pytest.approx(0.5)
    assert float(gan_loss(p, False, "hinge", for_d=True)) == pytest.approx(1.5)
    assert float(gan_loss(p, True, "hinge", for_d=False)) == pytest.approx(-0.5)
    D = MultiscaleDiscriminator(9, ndf=4, layers=2, num_d=2)
    x = torch.randn(2, 9, 16, 16)
    feats = D(x)
    assert len(feats) == 2 and len(feats[0]) == 4 and feats[0][-1].shape[1] == 1
    with torch.no_grad():
        assert float(feature_matching(feats, feats)) == 0.0
    assert float(feature_matching(D(x + 1), feats).detach()) > 0
    cfg = DistillConfig(steps=100, lr=1.0, decay_fraction=0.5)
    assert [get_lr(s, cfg) for s in (0, 49, 50, 75, 100)] == [1.0, 1.0, 1.0, 0.5, 0.0]


def test_tiny_training_lowers_the_validation_loss(gen_file):
    # pixel L1 instead of the VGG loss keeps this fast (the resume test below trains with VGG)
    tr = DistillTrainer(tiny_cfg(gen_file, steps=20, lambda_vgg=0.0, lambda_l1=10.0, val_triplets=4), None,
                        tqdm_bar=False)
    before = tr.validate()
    assert tr.run() == "done" and tr.step == 20
    after = tr.validate()
    assert after["val_l1"] < 0.8 * before["val_l1"]
    assert after["val_lpips"] < before["val_lpips"] and after["val_ssim"] > before["val_ssim"]
    # student output: shape and range
    c, s, _ = tr.validation_set()
    with torch.no_grad():
        y = tr.S(torch.cat([c[:2], s[:2]], 1))
    assert y.shape == (2, 3, 16, 16) and float(y.abs().max()) <= 1


def test_run_directory_and_bit_exact_resume_from_the_command_line(gen_file, tmp_path):
    common = ["--generator", str(gen_file), "--size", "tiny", "--batch", "2", "--lr", "1e-3", "--val-triplets", "4",
              "--eval-every", "3", "--log-every", "3", "--steps", "6", "--decay-fraction", "0.5", "--threads", "1",
              "--no-tqdm", "--out", str(tmp_path / "runs")]
    assert main(common + ["--max-steps", "3"]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("00000-distill-tiny-g-medium-tiny")
    for f in ("config.json", "log.txt", "metrics.jsonl", "resume.pt", "best.safetensors", "samples/latest.png"):
        assert (run / f).is_file(), f
    assert safe_torch_load(run / "resume.pt")["step"] == 3
    assert main(["--resume", str(run), "--max-steps", "6", "--no-tqdm"]) == 0
    recs = _records(run)
    assert [r.get("event") for r in recs if r.get("event") in ("start", "resume", "end")] == \
        ["start", "end", "resume", "end"]
    evals = [r for r in recs if r.get("event") == "eval"]
    assert [r["step"] for r in evals] == [3, 6] and all(0 <= r["val_ssim"] <= 1 for r in evals)
    assert [r["step"] for r in recs if "loss_g" in r] == [3, 6]
    # the same 6 steps without a break give the same weights, bit for bit (evaluations change nothing)
    cfg, _ = parse_args(common + ["--eval-every", "1000"])
    ref = DistillTrainer(cfg, None, tqdm_bar=False)
    assert ref.run() == "done"
    resumed = safe_torch_load(run / "resume.pt")["S"]
    assert all(torch.equal(v, resumed[k]) for k, v in ref.S.state_dict().items())
    # the best checkpoint is a working student file
    mixer = load_student(run / "best.safetensors")
    assert mixer.group == "medium" and mixer.info["crossover"] == 4 and mixer.resolution == 16
    snaps = sorted((run / "snapshots").glob("student-*.safetensors"))
    assert [p.name for p in snaps] == ["student-00000003.safetensors", "student-00000006.safetensors"]
    # ... which build_pack adds to a pack (float16), where `find_student` / `make_mixer` pick it up
    from studio.core.distill import find_student, make_mixer
    from trainers.pack.build_pack import add_student

    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "manifest.json").write_text(json.dumps({"format": "stylestudio-model", "format_version": 1,
                                                    "networks": {}, "num_ws": 6, "resolution": 16}))
    f = add_student(pack, run / "best.safetensors")
    assert f.name == "student-medium.safetensors" and find_student(pack, "medium") == f
    m = make_mixer(pack, group="medium")
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.allclose(m.mix_tensor(x, x), mixer.mix_tensor(x, x), atol=2e-2)  # float16 weights


def test_a_finished_run_trains_longer_and_keeps_its_new_target(gen_file, tmp_path):
    """--resume RUN --steps N (the GUI's Train longer…) continues a finished run to N, and writes N
    into its config.json: a later plain --resume (after a stop) keeps going to N instead of ending
    at the old target at once; per-invocation flags (--max-steps, --threads) are not written."""
    common = ["--generator", str(gen_file), "--size", "tiny", "--batch", "2", "--lr", "1e-3", "--val-triplets", "2",
              "--eval-every", "100", "--log-every", "1", "--steps", "2", "--lambda-vgg", "0", "--threads", "1",
              "--no-tqdm", "--out", str(tmp_path / "runs")]
    assert main(common) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert safe_torch_load(run / "resume.pt")["step"] == 2
    assert main(["--resume", str(run), "--steps", "5", "--max-steps", "3", "--no-tqdm"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["steps"] == 5 and saved["train"]["max_steps"] is None
    assert saved["resumed"][-1]["changed"] == {"steps": 5}
    assert safe_torch_load(run / "resume.pt")["step"] == 3
    assert main(["--resume", str(run), "--no-tqdm"]) == 0  # plain: on to the new target
    assert safe_torch_load(run / "resume.pt")["step"] == 5
    ends = [r["reason"] for r in _records(run) if r.get("event") == "end"]
    assert ends == ["done", "max_steps", "done"]
    assert len(json.loads((run / "config.json").read_text())["resumed"]) == 1  # nothing changed the last time
    assert main(["--resume", str(run), "--steps", "0", "--no-tqdm"]) == 2  # checked like a new run's


def test_flag_errors_name_the_flag(gen_file, tmp_path, capsys):
    with pytest.raises(UserError, match="--group"):
        DistillTrainer(tiny_cfg(gen_file, group="fine"), None, tqdm_bar=False)  # 16 px: no fine rows
    with pytest.raises(UserError, match="--batch"):
        parse_args(["--batch", "1"])
    assert main(["--generator", str(gen_file), "--group", "coarse", "--out", str(tmp_path), "--no-tqdm"]) == 2
    assert "--group" in capsys.readouterr().err
    assert main(["--resume", str(tmp_path / "nope")]) == 2
    cfg, args = parse_args(["--size", "paper", "--dry-run"])
    assert args.dry_run and cfg.width == 64 and cfg.blocks == 9


def test_triplets_of_another_generator_name_it(gen_file, tmp_path):
    """--data rendered by another generator (another size) says which one to give with --generator."""
    from studio.core.distill import crossover_row
    from trainers.distill_data import write_triplets

    torch.manual_seed(1)
    G32 = Generator(z_dim=32, w_dim=32, img_resolution=32, mapping_layers=2, channel_base=256, channel_max=32)
    data = write_triplets(G32.eval(), tmp_path / "t32.npz", 6, crossover_row(G32.num_ws, "medium"),
                          info={"group": "medium", "generator": "/models/g32.safetensors"})
    with pytest.raises(UserError, match=r"rendered by /models/g32\.safetensors: give that generator with --generator"):
        DistillTrainer(tiny_cfg(gen_file, data=str(data)), None, tqdm_bar=False)


def test_sigterm_writes_a_snapshot_and_stops(gen_file, tmp_path):
    import os
    import signal

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    run = tmp_path / "run"
    run.mkdir()

    def progress(rec):
        if rec.get("step") == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    try:
        tr = DistillTrainer(tiny_cfg(gen_file, lambda_vgg=0.0, eval_every=1000), run, tqdm_bar=False,
                            on_progress=progress)
        assert tr.run() == f"signal {int(signal.SIGTERM)}"
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    assert safe_torch_load(run / "resume.pt")["step"] == 2
    assert (run / "snapshots" / "student-00000002.safetensors").is_file()
    assert _records(run)[-1] == {**_records(run)[-1], "event": "end", "reason": "signal 15", "step": 2}


def test_init_starts_from_another_students_weights(gen_file, tmp_path):
    """--init STUDENT (a file or a pack folder) starts the student from those weights, bit for bit
    up to the file's dtype, with a fresh discriminator; another architecture or crossover is refused."""
    from trainers.pack.build_pack import add_student

    (tmp_path / "a").mkdir()
    tr = DistillTrainer(tiny_cfg(gen_file, steps=2, lambda_vgg=0.0, lambda_l1=10.0, val_triplets=2), tmp_path / "a",
                        tqdm_bar=False)
    assert tr.run() == "done"
    best = tmp_path / "a" / "best.safetensors"
    fresh = DistillTrainer(tiny_cfg(gen_file), None, tqdm_bar=False)
    init = DistillTrainer(tiny_cfg(gen_file, init=str(best)), None, tqdm_bar=False)
    trained = load_student(best).student.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in init.S.state_dict().items())
    assert not all(torch.equal(v, trained[k]) for k, v in fresh.S.state_dict().items())
    assert all(torch.equal(v, fresh.D.state_dict()[k]) for k, v in init.D.state_dict().items())
    # a pack folder: its student for --group (stored in float16)
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "manifest.json").write_text(json.dumps({"format": "stylestudio-model", "format_version": 1,
                                                    "networks": {}, "num_ws": 6, "resolution": 16}))
    add_student(pack, best)
    from_pack = DistillTrainer(tiny_cfg(gen_file, init=str(pack)), None, tqdm_bar=False)
    assert all(torch.allclose(v, trained[k], atol=1e-2) for k, v in from_pack.S.state_dict().items())
    with pytest.raises(UserError, match=r"--init: .* different student: width 8 \(here 16\)"):
        DistillTrainer(tiny_cfg(gen_file, init=str(best), width=16), None, tqdm_bar=False)
    with pytest.raises(UserError, match="--init: .* no student for --group"):
        DistillTrainer(tiny_cfg(gen_file, init=str(tmp_path / "a" / "samples")), None, tqdm_bar=False)
    cfg, _ = parse_args(["--init", str(best), "--dry-run"])
    assert cfg.init == str(best.resolve())
