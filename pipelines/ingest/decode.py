"""One file to one checked frame on its domain grid (runs in worker processes)."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.config import DomainConfig, MotioncastConfig
from pipelines.frame import Frame
from pipelines.grid import Grid
from pipelines.radar.errors import BadInputError
from pipelines.radar.formats import detect_format
from pipelines.radar.readers import Decoded, get_method

log = logging.getLogger(__name__)

# a rain rate above this is not weather but a broken file or a unit error
MAX_PLAUSIBLE_MM_H = 1000.0


def _domain_for(
    path: Path, decoded: Decoded, cfg: MotioncastConfig, requested: str | None
) -> tuple[str, Grid]:
    """The requested (configured) domain, else the first configured domain that cuts the
    data's source or holds the data's centre, else the source's own (native grid, or
    site-centred grid for a volume)."""
    if requested is not None:
        check_domain(requested, cfg)
        return requested, _domain_grid(path, decoded, requested, cfg.domains[requested])
    for name, d in cfg.domains.items():
        if d.source is not None:
            if d.source == decoded.source:
                return name, _domain_grid(path, decoded, name, d)
        elif d.grid().contains_lonlat(*decoded.centre_lonlat):
            return name, d.grid()
    return decoded.source, decoded.grid


def _domain_grid(path: Path, decoded: Decoded, name: str, domain: DomainConfig) -> Grid:
    """The grid of domain ``name`` for this file: its own, or its cut of the file's grid."""
    if domain.source is None:
        return domain.grid()
    if domain.source != decoded.source:
        raise BadInputError(
            path,
            f"domain {name!r} is a cut of {domain.source!r}; this file is from {decoded.source!r}",
        )
    try:
        return domain.grid(decoded.grid)
    except ValueError as exc:
        raise BadInputError(path, f"domain {name!r}: {exc}") from None


def check_domain(name: str, cfg: MotioncastConfig) -> None:
    """A domain asked for by name must be configured (a typo must not quarantine every file)."""
    if name not in cfg.domains:
        known = ", ".join(cfg.domains) or "none"
        raise ValueError(f"domain {name!r} is not configured (configured: {known})")


def _check_time(path: Path, t: pd.Timestamp, cfg: MotioncastConfig) -> None:
    earliest = pd.Timestamp(cfg.ingest.earliest_time)
    latest = pd.Timestamp.now("UTC").tz_convert(None) + pd.Timedelta(
        minutes=cfg.ingest.max_future_minutes
    )
    if t < earliest:
        raise BadInputError(path, f"time {t} is before {earliest} (ingest.earliest_time)")
    if t > latest:
        raise BadInputError(
            path, f"time {t} is in the future (now {pd.Timestamp.now('UTC'):%F %T}Z)"
        )


def _screen_values(path: Path, precip: np.ndarray, max_invalid_share: float) -> str:
    """Set impossible cells (negative, or above MAX_PLAUSIBLE_MM_H) to unknown, in place.

    Returns what was done, for the frame's provenance ('' when nothing). The frame is unusable,
    and the file rejected, when it has no valid cell or more than ``max_invalid_share`` of its
    valued cells are impossible.
    """
    lowest, highest = np.fmin.reduce(precip, axis=None), np.fmax.reduce(precip, axis=None)
    if np.isnan(highest):  # fmin/fmax skip NaN: NaN only when every cell is
        raise BadInputError(path, "no valid data: every cell is missing")
    if 0 <= lowest and highest <= MAX_PLAUSIBLE_MM_H:  # the usual case, in two passes
        return ""
    valued = ~np.isnan(precip)  # infinities are valued, and impossible
    n = int(valued.sum())
    with np.errstate(invalid="ignore"):
        negative = valued & (precip < 0)
        huge = valued & (precip > MAX_PLAUSIBLE_MM_H)
    notes = []
    for mask, what in ((negative, "negative"), (huge, f"above {MAX_PLAUSIBLE_MM_H:g} mm/h")):
        count = int(mask.sum())
        if count:
            values = precip[mask]
            notes.append(f"{count} {what} ({values.min():g} to {values.max():g} mm/h)")
    if not notes:
        return ""
    bad = negative | huge
    share = bad.sum() / n
    summary = ", ".join(notes)
    if share > max_invalid_share:
        raise BadInputError(
            path,
            f"{share:.1%} of the valued cells are impossible: {summary} "
            f"(ingest.max_invalid_share {max_invalid_share:g})",
        )
    precip[bad] = np.nan
    note = f"{int(bad.sum())} of {n} cells set to unknown: {summary}"
    log.warning("%s: %s", path, note)
    return note


def decode_file(path: Path, cfg: MotioncastConfig, domain: str | None = None) -> Frame:
    """Decode, convert to mm/h, place on the domain grid and check one file."""
    path = Path(path)
    content = path.read_bytes()
    fmt = detect_format(path, content[:16])
    decoded = get_method(fmt)(path, cfg)
    _check_time(path, decoded.time, cfg)
    name, grid = _domain_for(path, decoded, cfg, domain)
    # the frame's own array, contiguous and writable (screening edits it): a copy only when
    # the reader's is a view (a region's cut must not keep the whole source frame alive)
    precip = np.require(decoded.to_grid(grid), np.float32, ["C", "O", "W"])
    quality = _screen_values(path, precip, cfg.ingest.max_invalid_share)
    step = cfg.domains[name].time_step_minutes if name in cfg.domains else None
    return Frame(
        domain=name,
        time=decoded.time,
        grid=grid,
        precip=precip,
        source_files=path.name,
        source_sha256=hashlib.sha256(content).hexdigest(),
        source_format=fmt,
        radars=decoded.radars,
        product=decoded.product,
        scan_times=decoded.scan_times,
        quality=quality,
        site_lonlat=decoded.site_lonlat,
        time_step_minutes=step or decoded.time_step_minutes,
    )


@dataclass
class DecodeOutcome:
    path: Path
    frame: Frame | None
    error: str | None = None  # one line: the file and the reason

    @property
    def ok(self) -> bool:
        return self.frame is not None


def decode_outcome(path: Path, cfg: MotioncastConfig, domain: str | None = None) -> DecodeOutcome:
    """decode_file that never raises: transient I/O errors are retried, bad input is reported."""
    attempts = cfg.ingest.retries + 1
    for attempt in range(1, attempts + 1):
        try:
            return DecodeOutcome(path, decode_file(path, cfg, domain))
        except BadInputError as exc:
            return DecodeOutcome(path, None, str(exc))
        except OSError as exc:  # the file vanished, is locked or the disk hiccuped: try again
            if attempt == attempts:
                return DecodeOutcome(
                    path, None, f"{path}: unreadable after {attempts} tries ({exc})"
                )
            log.warning("%s: %s; retrying", path, exc)
            time.sleep(cfg.ingest.retry_delay_seconds)
        except Exception as exc:  # a reader bug must not stop the batch
            log.exception("unexpected failure decoding %s", path)
            return DecodeOutcome(path, None, f"{path}: unexpected {type(exc).__name__}: {exc}")
    raise AssertionError("unreachable")
