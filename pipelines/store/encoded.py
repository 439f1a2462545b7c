"""A frame's precip encoded where it was decoded, as the archive stores it.

A decoding process encodes the field into the chunks of the archive's precip array (Zarr v3:
little-endian float32 tiles of the chunk edges, edge tiles padded to full size, each compressed
by Zstandard at the store's level), and the committing process stores those bytes as they are:
each tile byte for byte what Zarr writes for it, except that a tile all NaN is stored too (Zarr
leaves it out; it reads the same, and it replaces what the slot held before).
Encoding is the bulk of a commit's work: done in the decoding processes it runs in parallel,
and the one committing process, which every frame goes through, does not decode a wire format
and encode again (KNMI: 2.7 of its 3 ms a frame, measured; bench/ingest.py). A group whose array
is laid out otherwise (another chunking or codec, an older store) gets the field decoded and
written through Zarr as usual.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BytesCodec, ZstdCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync


@dataclass(frozen=True)
class EncodedPrecip:
    shape: tuple[int, int]  # (ny, nx) of the field
    chunks: tuple[int, int]  # chunk edges (rows, columns)
    level: int  # Zstandard level
    tiles: tuple[bytes, ...]  # the chunks, row by row
    wet_fraction: np.float32  # of the field, for the archive's per-slot variables

    @classmethod
    def encode(
        cls, precip: np.ndarray, chunks: tuple[int, int], level: int, wet: np.float32
    ) -> EncodedPrecip:
        """``precip`` (ny, nx) as compressed float32 tiles of ``chunks``; ``wet``: its wet
        fraction (the archive's, computed by the caller)."""
        cy, cx = chunks
        codec = numcodecs.Zstd(level=level)  # what zarr's ZstdCodec(checksum=False) runs
        tiles = []
        for r, c in _corners(precip.shape, chunks):
            tile = np.full((cy, cx), np.nan, dtype="<f4")  # an edge tile: padded, as Zarr
            part = precip[r : r + cy, c : c + cx]
            tile[: part.shape[0], : part.shape[1]] = part
            tiles.append(bytes(codec.encode(tile)))
        return cls(precip.shape, chunks, level, tuple(tiles), wet)

    @property
    def float32_bytes(self) -> int:
        """The size of the field it stands for (float32)."""
        return self.shape[0] * self.shape[1] * 4

    def decode(self) -> np.ndarray:
        """The field, float32 (ny, nx)."""
        ny, nx = self.shape
        cy, cx = self.chunks
        codec = numcodecs.Zstd(level=self.level)
        out = np.empty((ny, nx), dtype=np.float32)
        for (r, c), data in zip(_corners(self.shape, self.chunks), self.tiles, strict=True):
            tile = np.frombuffer(codec.decode(data), dtype="<f4").reshape(cy, cx)
            out[r : r + cy, c : c + cx] = tile[: min(cy, ny - r), : min(cx, nx - c)]
        return out

    def fits(self, array: zarr.Array) -> bool:
        """Whether ``array`` (time, y, x) stores frames exactly as these tiles are encoded."""
        codecs = (BytesCodec(endian="little"), ZstdCodec(level=self.level, checksum=False))
        return (
            getattr(array.metadata, "codecs", None) is not None  # Zarr v3
            and array.ndim == 3
            and tuple(array.shape[1:]) == self.shape
            and tuple(array.chunks) == (1, *self.chunks)
            and array.dtype == np.dtype(np.float32)
            and tuple(array.metadata.codecs) == codecs
        )

    def store(self, array: zarr.Array, index: int) -> None:
        """The tiles into slot ``index`` of ``array`` (which they fit), as they are."""
        cy, cx = self.chunks
        keys = [
            f"{array.path}/{array.metadata.encode_chunk_key((index, r // cy, c // cx))}"
            for r, c in _corners(self.shape, self.chunks)
        ]
        make = default_buffer_prototype().buffer.from_bytes

        async def put_all() -> None:
            await asyncio.gather(
                *(
                    array.store.set(key, make(tile))
                    for key, tile in zip(keys, self.tiles, strict=True)
                )
            )

        sync(put_all())


def _corners(shape: tuple[int, int], chunks: tuple[int, int]) -> list[tuple[int, int]]:
    """(row, column) of each chunk's first cell, row by row: the order of the tiles."""
    return [(r, c) for r in range(0, shape[0], chunks[0]) for c in range(0, shape[1], chunks[1])]


def stored_precip(array: zarr.Array, index: int, precip: np.ndarray | EncodedPrecip) -> None:
    """A frame's field into slot ``index`` of the precip array: its encoded tiles as they are
    when they fit the array, else through Zarr."""
    if isinstance(precip, EncodedPrecip):
        if precip.fits(array):
            precip.store(array, index)
            return
        precip = precip.decode()
    array[index] = precip
