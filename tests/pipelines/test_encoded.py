"""Fields encoded where they are decoded: the committing process stores the bytes as they are,
and what the archive then holds is what Zarr would have written."""

from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from zarr.codecs import ZstdCodec

from pipelines.frame import Frame
from pipelines.grid import Grid
from pipelines.store import Archive
from pipelines.store.encoded import EncodedPrecip, stored_precip
from pipelines.store.layout import wet_fraction

GRID = Grid.from_extent("EPSG:3035", (0.0, 0.0, 70e3, 50e3), 1000.0)  # 50 x 70 cells


def _field(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = rng.gamma(0.5, 2.0, GRID.shape).astype(np.float32)
    field[:7, :11] = np.nan  # outside coverage
    return field


def _array(folder: Path, slots: int, chunks: tuple[int, int], level: int) -> zarr.Array:
    group = zarr.open_group(folder, mode="w")
    return group.create_array(
        "precip", shape=(slots, *GRID.shape), chunks=(1, *chunks), dtype="float32",
        fill_value=np.nan, compressors=[ZstdCodec(level=level)],
    )  # fmt: skip


def test_encoding_round_trips_with_padded_edge_tiles():
    field = _field(0)
    encoded = EncodedPrecip.encode(field, (20, 30), 1, wet_fraction(field))
    assert len(encoded.tiles) == 3 * 3 and encoded.float32_bytes == field.nbytes
    np.testing.assert_array_equal(encoded.decode(), field)
    assert encoded.wet_fraction == wet_fraction(field)


def test_stored_tiles_read_as_zarr_would_have_written_them(tmp_path: Path):
    """One array, two slots: one written by Zarr, one from the encoded tiles, as they are;
    both read back equal, and the stored bytes are Zarr's own."""
    field = _field(1)
    array = _array(tmp_path / "z", 2, (20, 30), 1)
    array[0] = field
    encoded = EncodedPrecip.encode(field, (20, 30), 1, wet_fraction(field))
    assert encoded.fits(array)
    stored_precip(array, 1, encoded)
    np.testing.assert_array_equal(array[1], field)
    for r, c in ((0, 0), (2, 2)):  # an inner and an edge tile, byte for byte
        zarr_bytes = (tmp_path / "z/precip/c/0" / str(r) / str(c)).read_bytes()
        assert (tmp_path / "z/precip/c/1" / str(r) / str(c)).read_bytes() == zarr_bytes


def test_an_array_laid_out_otherwise_gets_the_field_through_zarr(tmp_path: Path):
    field = _field(2)
    array = _array(tmp_path / "z", 1, (25, 35), 3)
    encoded = EncodedPrecip.encode(field, (20, 30), 1, wet_fraction(field))
    assert not encoded.fits(array)  # other chunks, other level
    stored_precip(array, 0, encoded)
    np.testing.assert_array_equal(array[0], field)


def test_an_archive_written_from_encoded_frames_equals_one_written_from_arrays(tmp_path: Path):
    t0 = pd.Timestamp("2026-06-01T12:00")
    fields = [_field(i) for i in range(3)]

    def frames(encode: bool) -> list[Frame]:
        return [
            Frame(
                "d",
                t0 + pd.Timedelta(minutes=5 * i),
                GRID,
                EncodedPrecip.encode(f, GRID.shape, 1, wet_fraction(f)) if encode else f.copy(),
                f"f{i}",
                f"sha{i}",
                "test",
            )  # fmt: skip
            for i, f in enumerate(fields)
        ]

    plain = Archive(tmp_path / "plain", create=True)
    plain.write(frames(False), "plain")
    encoded = Archive(tmp_path / "encoded", create=True)
    encoded.write(frames(True), "encoded")
    a, b = plain.dataset("d").load(), encoded.dataset("d").load()
    np.testing.assert_array_equal(a.precip.values, b.precip.values)
    np.testing.assert_array_equal(a.wet_fraction.values, b.wet_fraction.values)
