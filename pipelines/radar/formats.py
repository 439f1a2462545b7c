"""Which format a file holds, judged from its content (magic bytes and internal structure)."""

from __future__ import annotations

import gzip
from pathlib import Path

import h5py

from pipelines.radar.attributes import attr_text
from pipelines.radar.errors import BadInputError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
GIF_MAGICS = (b"GIF87a", b"GIF89a")
NETCDF3_MAGIC = b"CDF"

FORMATS = (
    "knmi_hdf5",
    "odim_comp",
    "odim_pvol",
    "mch_gif",
    "bom_rf3",
    "fmi_pgm",
    "nexrad_l2",
    "cfradial1",
    "mrms_grib2",
)
NEXRAD_MAGIC = b"AR2V"
GZIP_MAGIC = b"\x1f\x8b"
PGM_MAGIC = b"P5"  # binary greyscale (FMI composites, plain or gzipped)
GRIB_MAGIC = b"GRIB"
MRMS_DISCIPLINE = 209  # GRIB2 section 0, octet 7: NOAA's local discipline of MRMS products


def _attr(obj: h5py.HLObject, name: str) -> str:
    return attr_text(obj.attrs.get(name, b""))


def _hdf5_format(path: Path) -> str:
    try:
        with h5py.File(path, "r") as f:
            if "ODIM_H5" in _attr(f, "Conventions") or "what" in f and "object" in f["what"].attrs:
                obj = _attr(f["what"], "object") if "what" in f else ""
                if obj == "COMP":
                    return "odim_comp"
                if obj in ("PVOL", "SCAN"):
                    return "odim_pvol"
                raise BadInputError(path, f"ODIM_H5 object {obj or '(none)'!r} is not supported")
            if "overview" in f and "image1" in f and "geographic" in f:
                return "knmi_hdf5"
            if "radial" in _attr(f, "Conventions").lower():
                return "cfradial1"
            if "precipitation" in f and "proj" in f:
                return "bom_rf3"
    except OSError as exc:
        raise BadInputError(path, f"unreadable HDF5 ({exc})") from None
    raise BadInputError(path, "HDF5 file of no known radar layout (ODIM, KNMI, BoM Rainfields)")


def _netcdf3_format(path: Path) -> str:
    import netCDF4

    try:
        with netCDF4.Dataset(path) as nc:
            conventions = str(getattr(nc, "Conventions", ""))
            variables = set(nc.variables)
    except OSError as exc:
        raise BadInputError(path, f"unreadable NetCDF ({exc})") from None
    if "radial" in conventions.lower():
        return "cfradial1"
    if {"precipitation", "proj"} <= variables:
        return "bom_rf3"
    raise BadInputError(path, "NetCDF file of no known radar layout (CfRadial, BoM Rainfields)")


def _grib_format(path: Path, head: bytes) -> str:
    """GRIB2 (section 0: octet 7 the discipline, octet 8 the edition) of MRMS's discipline."""
    if len(head) < 8 or head[7] != 2:
        edition = head[7] if len(head) >= 8 else "unknown"
        raise BadInputError(path, f"GRIB edition {edition} is not supported (GRIB2 only)")
    if head[6] != MRMS_DISCIPLINE:
        raise BadInputError(
            path, f"GRIB2 of discipline {head[6]}, not a radar product (MRMS: {MRMS_DISCIPLINE})"
        )
    return "mrms_grib2"


def detect_format(path: Path, head: bytes) -> str:
    """The name of the reader for ``path`` whose first bytes are ``head``; BadInputError if none."""
    if not head:
        raise BadInputError(path, "empty file (0 bytes)")
    if head.startswith(HDF5_MAGIC):
        return _hdf5_format(path)
    if head.startswith(GIF_MAGICS):
        return "mch_gif"
    if head.startswith(NETCDF3_MAGIC):
        return _netcdf3_format(path)
    if head.startswith(NEXRAD_MAGIC):
        return "nexrad_l2"
    if head.startswith(PGM_MAGIC):
        return "fmi_pgm"
    if head.startswith(GRIB_MAGIC):
        return _grib_format(path, head)
    if head.startswith(GZIP_MAGIC):
        try:
            with gzip.open(path) as f:
                inner = f.read(8)
        except (OSError, EOFError) as exc:
            raise BadInputError(path, f"corrupt gzip ({exc})") from None
        if inner.startswith(NEXRAD_MAGIC):
            return "nexrad_l2"
        if inner.startswith(PGM_MAGIC):
            return "fmi_pgm"
        raise BadInputError(path, "gzip file holding no known radar format")
    raise BadInputError(
        path, "not a known radar format (no HDF5, NetCDF, GIF, PGM or GRIB2 signature)"
    )
