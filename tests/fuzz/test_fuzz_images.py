"""Damaged photos: ``load_image`` returns an RGB uint8 array or raises :class:`ImageError` (its
docstring), including for decompression bombs and lying headers, each case within the time limit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from studio.core.errors import ImageError
from studio.core.imageio import load_image
from tests.fuzz import seeds
from tests.fuzz.harness import check, fuzz_settings
from tests.fuzz.mutate import bmp_variants, jpeg_variants, mutated_bytes, png_variants

pytestmark = pytest.mark.filterwarnings("ignore")  # Pillow warns about the damage it tolerates


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("images")


def _assert_image(result):
    arr, info = result
    assert isinstance(arr, np.ndarray) and arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    assert arr.flags.c_contiguous and (arr.shape[1], arr.shape[0]) == info.size


@st.composite
def damaged_image(draw):
    imgs = seeds.image_seeds()
    kind = draw(st.sampled_from(sorted(imgs)))
    seed = imgs[kind]
    how = draw(st.sampled_from(["bytes", "bytes", "bytes", "header"]))
    if how == "header":
        if kind.startswith("png"):
            return kind, draw(png_variants(seed))
        if kind.startswith("jpeg"):
            return kind, draw(jpeg_variants(seed))
        if kind == "bmp":
            return kind, draw(bmp_variants(seed))
    return kind, draw(mutated_bytes(seed, splice_with=tuple(imgs.values())))


@fuzz_settings(200)
@given(case=damaged_image(), as_bytes=st.booleans())
def test_load_image(workdir, case, as_bytes):
    kind, blob = case
    if as_bytes:
        outcome, result = check("load_image", lambda: load_image(blob), (ImageError,))
    else:
        path = workdir / f"photo.{kind.split('-')[0]}"
        path.write_bytes(blob)
        outcome, result = check("load_image", lambda: load_image(path), (ImageError,))
    if outcome == "accepted":
        _assert_image(result)
