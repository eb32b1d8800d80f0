"""pSp / e4e / E2Style checkpoints against the official outputs (fixture README §3, §4, §5).

Each official container is rebuilt exactly as the README shows and read through
``load_checkpoint`` (content detection: one of them is saved as ``model.bin``). Models are built
once per fixture (module scope); the 1024 decoder makes each forward take seconds on a CPU.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from studio.core.errors import CheckpointError
from studio.core.formats import detect_format, load_checkpoint
from studio.core.formats import psp_pt
from studio.core.formats.rosinality_pt import rosinality_name_table
from studio.core.nets.encoding import EncoderPipeline
from tests.conftest import fixture_dir
from tests.fixtures_util import fixture_seed, make_state_checked

pytestmark = pytest.mark.fixtures

PSP, E4E, E2S = "psp_ffhq_encode", "e4e_ffhq_encode", "e2style_ffhq_2stage"
FORMAT = {PSP: "psp", E4E: "e4e", E2S: "e2style"}
RTOL = ATOL = 1e-4  # latents / codes (README "Tolerances")
IMG_ATOL = 1e-3  # images (|x| up to ~6)

# make_state of a 1.2 GB listing takes seconds: keep the recent ones (pSp and e4e share one listing).
_STATES: dict[tuple[str, int], dict[str, np.ndarray]] = {}


def _state(d: Path, listing: str, seed: int) -> dict[str, np.ndarray]:
    key = (hashlib.sha256((d / listing).read_bytes()).hexdigest(), seed)
    if key not in _STATES:
        while len(_STATES) >= 2:
            _STATES.pop(next(iter(_STATES)))
        _STATES[key] = make_state_checked(d, listing, seed)
    return _STATES[key]


def _official(d: Path) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray], dict]:
    seed = fixture_seed(d)
    layout = json.loads((d / "checkpoint_layout.json").read_text())
    state = _state(d, "state_dict_listing.jsonl", seed)
    return layout, state, make_state_checked(d, "extras_listing.jsonl", seed), layout["opts"]


def _torch(state: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    # torch.from_numpy as in the README: keeps 0-d tensors (num_batches_tracked) 0-d, which
    # tests.fixtures_util.to_torch (np.ascontiguousarray) turns into shape [1].
    return {k: torch.from_numpy(v) for k, v in state.items()}


def _container(state, extras, opts, **extra) -> dict:
    la = torch.from_numpy(extras["latent_avg"])
    return {"state_dict": _torch(state), "opts": dict(opts), "latent_avg": la, **extra}


@pytest.fixture(scope="module", params=[PSP, E4E, E2S])
def case(request, tmp_path_factory):
    name = request.param
    d = fixture_dir(name)
    layout, state, extras, opts = _official(d)
    extra = {}
    if name == E4E:  # training leftovers a real e4e file may carry: ignored
        extra = {"global_step": 20000, "best_val_loss": 0.25,
                 "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]},
                 "discriminator_state_dict": {"0.weight": torch.zeros(2, 2)}}
    # Content detection, not the file name: the e4e file is saved as model.bin.
    path = tmp_path_factory.mktemp(name) / ("model.bin" if name == E4E else "checkpoint.pt")
    torch.save(_container(state, extras, opts, **extra), path)
    bundle = load_checkpoint(path)
    path.unlink()  # 1.2 GB
    ref = dict(np.load(d / "outputs.npz"))
    x = torch.from_numpy(ref["x"])
    # One full forward per model; the encoder's raw codes are caught on the way (a hook), so the
    # expensive encoder runs once. E2Style: stage_outputs, whose last entry is what forward() gives.
    pipe = bundle.encoder
    first = pipe.encoder.stages[0] if name == E2S else pipe.encoder
    caught = []
    hook = first.register_forward_hook(lambda m, i, o: caught.append(o))
    try:
        with torch.no_grad():
            if name == E2S:
                stages = pipe.stage_outputs(x)
            else:
                img, ws = pipe(x)
                stages = [SimpleNamespace(ws=ws, img=img)]
    finally:
        hook.remove()
    yield SimpleNamespace(name=name, d=d, layout=layout, state=state, extras=extras, opts=opts, path=path,
                          bundle=bundle, ref=ref, x=x, codes=caught[0], stages=stages)


def test_format_and_bundle(case):
    b = case.bundle
    assert b.format == FORMAT[case.name]
    assert isinstance(b.encoder, EncoderPipeline) and not b.encoder.training
    assert b.generator is b.encoder.decoder and b.generator.num_ws == case.ref["latents"].shape[1]
    assert b.resolution == case.opts.get("output_size", case.opts.get("stylegan_size", 1024))
    assert b.meta["opts"] == case.opts
    la = case.extras["latent_avg"]
    np.testing.assert_array_equal(b.latent_avg.numpy(), la)
    # latent_avg rows differ in the fixture, so w_avg is their mean (and the notes say so).
    np.testing.assert_allclose(b.w_avg.numpy(), la.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(b.generator.mapping.w_avg.numpy(), b.w_avg.numpy())
    assert any("w_avg" in n for n in b.notes)
    if case.name == E4E:
        assert {"global_step", "optimizer", "discriminator_state_dict"} <= set(b.meta["ignored_keys"])


def test_every_weight_reads_back_exactly(case):
    b = case.bundle
    kind = b.format
    ours = b.encoder.state_dict()
    dec = b.generator.state_dict()
    num_convs = len([k for k in case.state if k.startswith("decoder.convs.") and k.endswith(".conv.weight")])
    n_mlp = len([k for k in case.state if k.startswith("decoder.style.") and k.endswith(".weight")])
    table = rosinality_name_table(num_convs, n_mlp)
    enc_keys = 0
    for key, want in case.state.items():
        if key.startswith("decoder."):
            k = key[len("decoder."):]
            if k.endswith(".kernel"):  # fixed FIR kernels: checked by the reader, not stored
                continue
            got = dec[table[k][0]].numpy().reshape(want.shape)
        else:
            dst = psp_pt.to_ours(kind, key)
            assert dst is not None and psp_pt.to_official(kind, dst) == key, key
            got = ours[dst].numpy()
            enc_keys += 1
        assert got.dtype == want.dtype, key
        if not np.array_equal(got, want):  # fast path; the assert gives the readable report
            np.testing.assert_array_equal(got, want, err_msg=key)
    # ... and nothing of ours is left out (encoder part).
    assert enc_keys == len([k for k in ours if k.startswith("encoder.")])


def test_codes(case):
    key = "codes_stage1" if case.name == E2S else "codes"
    np.testing.assert_allclose(case.codes.numpy(), case.ref[key], rtol=RTOL, atol=ATOL)
    if case.name == E2S:
        with torch.no_grad():  # stage 2's residual, given the stored stage-1 image
            delta = case.bundle.encoder.encoder.refine(1, case.x, torch.from_numpy(case.ref["images_stage1_256"]))
        np.testing.assert_allclose(delta.numpy(), case.ref["delta_stage2"], rtol=RTOL, atol=ATOL)


def test_full_forward(case):
    last = case.stages[-1]
    np.testing.assert_allclose(last.ws.numpy(), case.ref["latents"], rtol=RTOL, atol=ATOL)
    assert last.img.shape == case.ref["images_256"].shape
    np.testing.assert_allclose(last.img.numpy(), case.ref["images_256"], rtol=0, atol=IMG_ATOL)


def test_e2style_stages(case):
    """Stage k's image and latents; stage selection (stage 1 of a 2-stage model)."""
    if case.name != E2S:
        pytest.skip("E2Style only")
    pipe = case.bundle.encoder
    enc = pipe.encoder
    assert enc.config.num_stages == case.opts["training_stage"] == enc.active_stages == len(case.stages)
    stage1 = case.ref["codes_stage1"] + case.extras["latent_avg"][None]
    np.testing.assert_allclose(case.stages[0].ws.numpy(), stage1, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(case.stages[0].img.numpy(), case.ref["images_stage1_256"], rtol=0, atol=IMG_ATOL)
    np.testing.assert_allclose((case.stages[1].ws - case.stages[0].ws).numpy(), case.ref["delta_stage2"],
                               rtol=RTOL, atol=ATOL)
    try:
        enc.set_active_stages(1)
        with torch.no_grad():
            ws1 = pipe.encode(case.x)  # what forward() decodes at stage 1 (stage 1 runs alone)
    finally:
        enc.set_active_stages(enc.config.num_stages)
    np.testing.assert_allclose(ws1.numpy(), stage1, rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError):
        enc.set_active_stages(case.opts["training_stage"] + 1)


# ----------------------------------------------------------------------------
# Wrong inputs: every one is a CheckpointError that names the file.


def _expect_error(tmp_path, ckpt, *needles, name="bad.pt"):
    path = tmp_path / name
    torch.save(ckpt, path)
    try:
        with pytest.raises(CheckpointError) as ei:
            load_checkpoint(path)
    finally:
        path.unlink()
    msg = str(ei.value)
    assert str(path) in msg, msg
    for n in needles:
        assert n in msg, msg
    return msg


def test_missing_key_is_an_error(tmp_path):
    d = fixture_dir(PSP)
    _, state, extras, opts = _official(d)
    enc_keys = [k for k in state if k.startswith("encoder.") and not k.endswith("num_batches_tracked")]
    gone = enc_keys[len(enc_keys) // 2]
    ckpt = _container(state, extras, opts)
    del ckpt["state_dict"][gone]
    _expect_error(tmp_path, ckpt, "missing", gone)


def test_wrong_shape_is_an_error(tmp_path):
    d = fixture_dir(E2S)
    _, state, extras, opts = _official(d)
    key = next(k for k in state if k.startswith("encoder_refinestage_list.0.") and k.endswith("output_layer_4.3.bias"))
    ckpt = _container(state, extras, opts)
    ckpt["state_dict"][key] = ckpt["state_dict"][key][:-1]
    _expect_error(tmp_path, ckpt, key, "shape")


@pytest.mark.parametrize("encoder_type,needle", [
    ("BackboneEncoderUsingLastLayerIntoWPlus", "not supported"),
    ("BackboneEncoderUsingLastLayerIntoW", "not supported"),
    ("ResNetGradualStyleEncoder", "unknown encoder_type"),
])
def test_encoder_type(tmp_path, encoder_type, needle):
    # Detection reads opts before any weight, so a few tensors of the real layout are enough here.
    d = fixture_dir(PSP)
    _, state, extras, opts = _official(d)
    small = {k: v for k, v in list(state.items())[:7]}
    ckpt = _container(small, extras, dict(opts, encoder_type=encoder_type))
    _expect_error(tmp_path, ckpt, needle, encoder_type)


def test_detect_format_by_content(tmp_path):
    """detect_only identifies the family from the keys and opts (nothing is built)."""
    for name, fmt in FORMAT.items():
        d = fixture_dir(name)
        layout = json.loads((d / "checkpoint_layout.json").read_text())
        # The first tensors of the real layout (detection needs no more); zeros keep it quick.
        head = [json.loads(line) for line in (d / "state_dict_listing.jsonl").read_text().splitlines()[:7]]
        sd = {e["key"]: torch.zeros(e["shape"], dtype=getattr(torch, e["dtype"])) for e in head}
        path = tmp_path / f"{name}.weights"
        torch.save({"state_dict": sd, "opts": layout["opts"]}, path)
        assert detect_format(path) == fmt


def test_truncated_and_inconsistent_files(tmp_path):
    d = fixture_dir(E2S)
    _, state, extras, opts = _official(d)
    small = {k: v for k, v in list(state.items())[:7]}
    path = tmp_path / "cut.pt"
    torch.save(_container(small, extras, opts), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.pt"):
        load_checkpoint(path)
    # In memory (no 1 GB round trip): a stage count that the tensors contradict, a foreign key.
    ckpt = _container(state, extras, dict(opts, training_stage=3))
    with pytest.raises(CheckpointError, match=r"x\.pt.*training_stage"):
        psp_pt.from_checkpoint("x.pt", ckpt)
    ckpt = _container(state, extras, opts)
    ckpt["state_dict"]["encoder_firststage.extra_head.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r"x\.pt.*encoder_firststage\.extra_head\.weight"):
        psp_pt.from_checkpoint("x.pt", ckpt)


# ----------------------------------------------------------------------------
# Other decoder sizes / sparse opts / a [512] latent_avg (in memory, built from the same weights).


def test_psp_with_256_decoder_and_sparse_opts():
    """A pSp trained for a 256 generator: 14 heads, opts without n_styles / output_size.

    pSp heads are independent, so codes[:, :14] must equal the 1024 model's first 14 rows.
    """
    d = fixture_dir(PSP)
    dr = fixture_dir("rosinality_stylegan2_256")
    _, state, extras, opts = _official(d)
    g256 = make_state_checked(dr, "g_ema_listing.jsonl", fixture_seed(dr))
    sd = {k: v for k, v in state.items()
          if k.startswith("encoder.") and not (k.startswith("encoder.styles.") and int(k.split(".")[2]) >= 14)}
    sd.update({f"decoder.{k}": v for k, v in g256.items()})
    sparse = {k: v for k, v in opts.items() if k not in ("n_styles", "output_size", "stylegan_size")}
    la = extras["latent_avg"][0]  # a [512] average latent (as produced by older training runs)
    ckpt = {"state_dict": _torch(sd), "opts": sparse, "latent_avg": torch.from_numpy(la)}
    b = psp_pt.from_checkpoint("p256.pt", ckpt)
    assert b.format == "psp" and b.resolution == 256 and b.num_ws == 14
    np.testing.assert_array_equal(b.w_avg.numpy(), la)
    assert b.latent_avg.shape == (14, 512)
    ref = np.load(d / "outputs.npz")
    caught = []
    hook = b.encoder.encoder.register_forward_hook(lambda m, i, o: caught.append(o))
    with torch.no_grad():
        ws = b.encoder.encode(torch.from_numpy(ref["x"]))
    hook.remove()
    codes = caught[0]
    np.testing.assert_allclose(codes.numpy(), ref["codes"][:, :14], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(ws.numpy(), ref["codes"][:, :14] + la, rtol=RTOL, atol=ATOL)
    # The options contradicting the weights is an error.
    with pytest.raises(CheckpointError, match=r"p256\.pt.*output_size"):
        psp_pt.from_checkpoint("p256.pt", dict(ckpt, opts=dict(sparse, output_size=1024)))


def test_converts_to_stylestudio_format_bit_exactly(case, tmp_path):
    from studio.core.formats import stylestudio_fmt

    out = stylestudio_fmt.save(case.bundle, tmp_path / "enc.safetensors")
    b2 = load_checkpoint(out)
    assert b2.format == "stylestudio" and isinstance(b2.encoder, EncoderPipeline)
    assert b2.encoder.config == case.bundle.encoder.config
    for a, b in ((case.bundle.encoder.encoder, b2.encoder.encoder), (case.bundle.generator, b2.generator)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(b2.latent_avg, case.bundle.latent_avg)
    if case.name == E2S:
        assert b2.encoder.encoder.active_stages == case.bundle.encoder.encoder.active_stages
