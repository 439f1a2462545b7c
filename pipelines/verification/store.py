"""The scores store: pysteps' accumulated verification sums per domain, issue time and method.

Each verified forecast leaves, for the method it was issued with (``issued``) and for each
baseline run on its input frames (``persistence``, ``extrapolation``, ...), the accumulators of
``pipelines.scoring.scores.Scores`` (contingency tables per threshold, continuous-score sums,
FSS sums: per lead) as one vector. Any period pools exactly by merging the vectors of its issue
times with pysteps' ``*_merge`` functions, so the store keeps sums, not scores.

One Zarr group per domain: ``accumulators(issue_time, method, element)`` float64,
``issued_method`` and ``model_version`` per issue time, the score layout (leads, thresholds,
scales) in the group's attributes; issue times as int64 minutes since the epoch. Every run of
the verification is one Icechunk commit; an issue time already scored is never written again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import zarr

from pipelines.config import ObjectStorageConfig
from pipelines.scoring.scores import Scores, ScoreSpec
from pipelines.store.repository import ISSUE, StoreError, VersionedStore, has_group
from pipelines.store.timeaxis import TIME_UNITS, minutes_since_epoch

log = logging.getLogger(__name__)

ISSUED = "issued"  # the method label of the forecast as it was issued
ISSUE_CHUNK = 512  # issue times per chunk: under two days of 5-minute issues


class ScoresStoreError(StoreError):
    """The scores store cannot be opened or written; the message says why."""


@dataclass(frozen=True)
class Verified:
    """The scores of one issued forecast and of the baselines on its cells."""

    issue_time: pd.Timestamp
    issued_method: str  # what the forecast was made with (motionrnn, or a fallback)
    model_version: str
    scores: dict[str, Scores]  # by method label: ISSUED and each baseline


@dataclass(frozen=True)
class Pooled:
    """Scores of a period, merged over its issue times."""

    domain: str
    scores: dict[str, Scores]  # by method label
    issues: int
    issued_methods: dict[str, int]  # how many issues each method made ("motionrnn v0002": 280)
    first: pd.Timestamp | None
    last: pd.Timestamp | None


def _spec_attrs(spec: ScoreSpec, methods: list[str]) -> dict[str, object]:
    return {
        "leads": spec.leads,
        "thresholds_mm_h": list(spec.thresholds),
        "fss_thresholds_mm_h": list(spec.fss_thresholds),
        "fss_scales": list(spec.fss_scales),
        "methods": methods,
    }


def _spec_of(attrs: dict) -> ScoreSpec:
    return ScoreSpec(
        int(attrs["leads"]),
        tuple(attrs["thresholds_mm_h"]),
        tuple(attrs["fss_thresholds_mm_h"]),
        tuple(attrs["fss_scales"]),
    )


class ScoresStore(VersionedStore):
    """A scores store at a local path (or s3:// / gs:// URL)."""

    error = ScoresStoreError
    missing = "no scores store here (run 'motioncast verify' first)"
    marker = "accumulators"
    section = "scores"

    def __init__(
        self,
        location: str | Path,
        create: bool = False,
        storage: ObjectStorageConfig | None = None,
    ):
        super().__init__(location, 1, 3, create, storage)

    # ---- reading -------------------------------------------------------------------------
    def dataset(self, domain: str | None = None, snapshot: str | None = None) -> xr.Dataset:
        """The domain's accumulators as a Dataset, issue times decoded and sorted."""
        domain = self.resolve_domain(domain, snapshot)
        ds = xr.open_zarr(self._read_store(snapshot), group=domain, consolidated=False)
        return ds.sortby(ISSUE)

    def scored(self, domain: str) -> pd.DatetimeIndex:
        """Issue times of the domain scored already (sorted; empty when none)."""
        return self.stored_times(domain, ISSUE)

    def pool(
        self,
        domain: str,
        since: pd.Timestamp | None = None,
        until: pd.Timestamp | None = None,
    ) -> Pooled:
        """The scores of the issue times in [since, until] (either end open), merged."""
        ds = self.dataset(domain)
        ds = ds.sel({ISSUE: slice(since, until)})
        spec, methods = _spec_of(ds.attrs), list(ds.attrs["methods"])
        vectors = ds.accumulators.values  # (issues, methods, elements)
        empty = Scores(spec)
        pooled = {name: empty.pool(vectors[:, m]) for m, name in enumerate(methods)}
        times = pd.DatetimeIndex(ds[ISSUE].values)
        labels = [
            f"{method} {version}".strip()
            for method, version in zip(
                ds.issued_method.values, ds.model_version.values, strict=True
            )
        ]
        counts = dict(sorted(pd.Series(labels, dtype=object).value_counts().items()))
        return Pooled(
            domain,
            pooled,
            len(times),
            {k: int(v) for k, v in counts.items()},
            times[0] if len(times) else None,
            times[-1] if len(times) else None,
        )

    # ---- writing -------------------------------------------------------------------------
    def write(self, domain: str, verified: list[Verified]) -> str | None:
        """Append the scores of newly verified issue times in one commit (its snapshot id);
        issue times scored already are left as they are. None when nothing was new."""
        if not verified:
            return None
        times = [v.issue_time for v in verified]
        message = (
            f"scores {domain} {len(verified)} issues {min(times).isoformat()}.."
            f"{max(times).isoformat()}"
        )
        _, snapshot = self._commit(lambda store: self._stage(store, domain, verified), message)
        if snapshot is not None:
            log.info("%s: %s (%s)", self.location, message, snapshot)
        return snapshot

    def _stage(self, store, domain: str, verified: list[Verified]) -> tuple[None, bool]:
        methods = list(verified[0].scores)
        spec = verified[0].scores[methods[0]].spec
        if not has_group(store, domain):
            self._create(store, domain, spec, methods, verified)
            return None, True
        node = zarr.open_group(store, path=domain, mode="r+")
        if _spec_of(dict(node.attrs)) != spec or list(node.attrs["methods"]) != methods:
            raise ScoresStoreError(
                f"{self.location}: domain {domain!r} holds scores of another layout "
                f"({_spec_attrs(_spec_of(dict(node.attrs)), list(node.attrs['methods']))}); "
                "give another scores store (stores.scores.location)"
            )
        done = set(node[ISSUE][:].tolist())
        new = [v for v in verified if int(minutes_since_epoch(v.issue_time)) not in done]
        if not new:
            return None, False
        n = node[ISSUE].shape[0]
        self.grow(node, ISSUE, n + len(new))
        for name, values in _columns(new, methods).items():
            node[name][n:] = values
        return None, True

    def _create(
        self, store, domain: str, spec: ScoreSpec, methods: list[str], verified: list[Verified]
    ) -> None:
        """The domain's group, holding its first scores."""
        columns = _columns(verified, methods)
        size = columns["accumulators"].shape[-1]
        ds = xr.Dataset(
            {
                "accumulators": (
                    (ISSUE, "method", "element"),
                    columns["accumulators"],
                    {"long_name": "pysteps verification accumulators (pipelines.scoring.scores)"},
                ),
                "issued_method": ((ISSUE,), columns["issued_method"]),
                "model_version": ((ISSUE,), columns["model_version"]),
            },
            coords={
                ISSUE: (ISSUE, columns[ISSUE], {"units": TIME_UNITS}),
                "method": ("method", np.array(methods, dtype=object)),
            },
            attrs=_spec_attrs(spec, methods),
        )
        encoding = {
            "accumulators": {"chunks": (ISSUE_CHUNK, len(methods), size)},
            "issued_method": {"chunks": (ISSUE_CHUNK,)},
            "model_version": {"chunks": (ISSUE_CHUNK,)},
            ISSUE: {"chunks": (ISSUE_CHUNK,)},
        }
        ds.to_zarr(store, group=domain, mode="a", consolidated=False, encoding=encoding)


def _columns(verified: list[Verified], methods: list[str]) -> dict[str, np.ndarray]:
    """The stored variables of some verified issue times, issue time first."""
    return {
        ISSUE: np.array([minutes_since_epoch(v.issue_time) for v in verified], np.int64),
        "accumulators": np.stack(
            [np.stack([v.scores[m].vector() for m in methods]) for v in verified]
        ),
        "issued_method": np.array([v.issued_method for v in verified], dtype=object),
        "model_version": np.array([v.model_version for v in verified], dtype=object),
    }
