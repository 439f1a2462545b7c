"""The reader registry: one reader per input format, each returning a :class:`Decoded` field.

As in pysteps (``pysteps/io/interface.py``), ``get_method(name)`` returns the reader, and this
module maps the names (those of ``pipelines.radar.formats.FORMATS``) to the reader functions of
``composites.py`` and ``volumes.py``; the readers import nothing from here (``Decoded`` lives in
``decoded.py``). The reader modules are imported on the first ``get_method``: composites bring
pysteps and volumes xradar, which importing the registry alone should not pay for.

A reader gives the rain rate in mm/h with the time read from the file's content, and can put it
on any grid: composites are resampled from their native grid, polar volumes are gridded from
their gates.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from types import MappingProxyType

from pipelines.radar.decoded import Decoded, Reader

__all__ = ["Decoded", "Reader", "get_method", "readers"]


@cache
def readers() -> Mapping[str, Reader]:
    """Format name -> reader, for every format that has one."""
    from pipelines.radar import composites, volumes

    return MappingProxyType(
        {
            "knmi_hdf5": composites.read_knmi,
            "mch_gif": composites.read_mch,
            "odim_comp": composites.read_odim_comp,
            "bom_rf3": composites.read_bom,
            "fmi_pgm": composites.read_fmi,
            "mrms_grib2": composites.read_mrms,
            "odim_pvol": volumes.read_odim_pvol,
            "nexrad_l2": volumes.read_nexrad_l2,
            "cfradial1": volumes.read_cfradial1,
        }
    )


def get_method(name: str) -> Reader:
    """The reader of format ``name``; ValueError names the known ones for any other."""
    try:
        return readers()[name]
    except KeyError:
        known = ", ".join(sorted(readers()))
        raise ValueError(f"unknown reader {name!r}; known: {known}") from None
