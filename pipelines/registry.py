"""The model registry: a folder of numbered model versions and a record of the promoted one.

    REGISTRY/versions/v0001/model.safetensors   weights + model config (motionrnn checkpoint)
    REGISTRY/versions/v0001/card.json           what it is: run, data, validation scores
    REGISTRY/promoted.json                      the version in service, and the promotion history

A version is written to a temporary folder and renamed into place: it is whole or absent.
Writers take an exclusive lock (``fcntl.flock`` on ``REGISTRY/.lock``, waiting at most
``LOCK_TIMEOUT_S``) around a version's numbering and rename and around a promotion's
read-modify-write of ``promoted.json``, so concurrent ``register``/``promote`` from any number of
processes neither share a version number nor lose a promotion; the registry is a local (or
mounted) folder only, never object storage, so no conditional-write variant is needed. Readers
take no lock: every file is replaced atomically. Any OS failure (read-only or full disk, ...)
is raised as a one-line ``RegistryError`` naming the path and the reason.

Promotion compares scores on ``PROMOTION_METRIC`` (CSI at 1 mm/h, higher is better), always on the
same validation windows and cells, and refuses (unless forced) a model that

- does not beat PROMOTION_BASELINE (pysteps S-PROG, the best forecast the cycle can issue
  without a model) on its validation windows: the lower end of the 95 % interval of a paired
  bootstrap over those windows (``pipelines.scoring.bootstrap``: mean CSI at 1 mm/h over
  the leads, the model's minus S-PROG's) must lie above zero; its card records the test, or
- scores below the model in service on the candidate's validation windows: taken from the cards
  when both were scored on the same windows, else from ``rescored`` (both models scored again
  on the candidate's windows, ``pipelines.training.promotion``); without it the promotion is
  refused.

A refusal is a ``PromotionRefused``: the caller knows how its user overrides the rules (the
CLI's ``--force``) and says so. ``promotion()`` reads what is in service without ever failing
(the forecast service polls it while a registry may be copied or restored).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from pipelines.errors import error_line
from pipelines.localfiles import LockBusy, exclusive, write_json

PROMOTION_METRIC = "csi_1mm"
PROMOTION_THRESHOLD_MM_H = 1.0  # the event of PROMOTION_METRIC
PROMOTION_BASELINE = "sprog"  # the best method the cycle can issue without a model
CHECKPOINT = "model.safetensors"
CARD = "card.json"
PROMOTED = "promoted.json"
LOCK = ".lock"
LOCK_TIMEOUT_S = 30.0  # the longest a writer waits for another one's lock
_VERSION = re.compile(r"^v(\d{4,})$")


class RegistryError(RuntimeError):
    """A registry operation that cannot be done; the message says why."""


class PromotionRefused(RegistryError):
    """A promotion the rules refuse (a forced one would go ahead); ``rescore``: refused only
    because the two versions were validated on different windows, which scoring both on the
    candidate's windows would settle."""

    def __init__(self, message: str, rescore: bool = False):
        super().__init__(message)
        self.rescore = rescore


Promotion = tuple[Literal["version", "withdrawn", "unknown"], str | None]


@dataclass(frozen=True)
class ModelVersion:
    version: str
    path: Path  # the version's folder
    card: dict[str, Any]

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    def score(self, method: str = "model", metric: str = PROMOTION_METRIC) -> float | None:
        value = self.card.get("validation", {}).get(method, {}).get(metric)
        return None if value is None else float(value)


def _os_failure(what: str, exc: OSError, where: Path) -> RegistryError:
    """One line for an OS error: the path it names (else ``where``) and its reason."""
    path = exc.filename if exc.filename is not None else where
    reason = exc.strerror or str(exc) or type(exc).__name__
    return RegistryError(f"{path}: cannot {what} ({reason})")


class Registry:
    def __init__(self, root: str | Path, lock_timeout_s: float = LOCK_TIMEOUT_S):
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.lock_timeout_s = lock_timeout_s

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the registry's exclusive writer lock (waiting at most ``lock_timeout_s``); the
        lock file stays, the lock goes with the descriptor (and with a process that dies)."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            with exclusive(self.root / LOCK, self.lock_timeout_s):
                yield
        except LockBusy:
            raise RegistryError(
                f"{self.root}: the registry is locked by another writer for more "
                f"than {self.lock_timeout_s:g} s"
            ) from None

    def versions(self) -> list[ModelVersion]:
        """Every registered version, oldest first."""
        if not self.versions_dir.is_dir():
            return []
        found = sorted(
            (int(m.group(1)), p)
            for p in self.versions_dir.iterdir()
            if (m := _VERSION.match(p.name)) and (p / CARD).exists()
        )
        return [self.get(p.name) for _, p in found]

    def get(self, version: str) -> ModelVersion:
        path = self.versions_dir / version
        try:
            card = json.loads((path / CARD).read_text())
        except FileNotFoundError:
            known = ", ".join(v.version for v in self.versions()) or "none"
            raise RegistryError(
                f"{self.root}: no version {version!r} (registered: {known})"
            ) from None
        return ModelVersion(version, path, card)

    def register(self, checkpoint: str | Path, card: dict[str, Any]) -> ModelVersion:
        """Copy a motionrnn checkpoint in as the next version, with its card."""
        from motionrnn.model import checkpoint_metadata  # torch: only to register

        checkpoint = Path(checkpoint)
        try:
            metadata = checkpoint_metadata(checkpoint)
        except Exception as exc:
            raise RegistryError(f"{checkpoint}: not a motionrnn checkpoint ({exc})") from None
        try:
            self.versions_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.versions_dir))
        except OSError as exc:
            raise _os_failure("register a version", exc, self.versions_dir) from None
        try:
            shutil.copy2(checkpoint, staging / CHECKPOINT)  # the long part: outside the lock
            with self._locked():  # numbering and rename: one writer at a time
                numbers = [
                    int(m.group(1))
                    for p in self.versions_dir.iterdir()
                    if (m := _VERSION.match(p.name))
                ]
                version = f"v{max(numbers, default=0) + 1:04d}"
                full = {
                    **card,
                    "version": version,
                    "registered_at": pd.Timestamp.now("UTC"),
                    "checkpoint_metadata": metadata,
                }
                write_json(staging / CARD, full)
                staging.rename(self.versions_dir / version)
        except OSError as exc:
            raise _os_failure("register a version", exc, self.versions_dir) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.get(version)

    def _promotions(self) -> dict[str, Any]:
        path = self.root / PROMOTED
        return json.loads(path.read_text()) if path.exists() else {"version": None, "history": []}

    def promotion(self) -> Promotion:
        """What ``promoted.json`` says, never raising: ('version', name), ('withdrawn', None),
        or ('unknown', None when it is missing, else why it cannot be read)."""
        path = self.root / PROMOTED
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return "unknown", None
        except (OSError, ValueError) as exc:
            return "unknown", f"{path} unreadable ({error_line(exc)})"
        version = record.get("version", False) if isinstance(record, dict) else False
        if version is None:
            return "withdrawn", None
        if not isinstance(version, str) or not version:
            return "unknown", f"{path} unreadable (no version in it)"
        return "version", version

    def promoted(self) -> ModelVersion | None:
        version = self._promotions()["version"]
        return self.get(version) if version else None

    def promote(
        self,
        version: str,
        force: bool = False,
        rescored: dict[str, float | None] | None = None,
    ) -> ModelVersion:
        """Put ``version`` in service, unless it does not beat S-PROG or loses to the current one
        (see the module docstring); ``rescored``: version -> score on the candidate's windows."""
        try:
            candidate = self.get(version)
            with self._locked():  # the version in service is read, compared and replaced whole
                record = self._promotions()
                current = self.get(record["version"]) if record["version"] else None
                if not force:
                    _check_beats_baseline(candidate)
                    if current is not None and current.version != version:
                        _check_beats_current(candidate, current, rescored)
                record["history"].append(
                    {
                        "version": version,
                        "at": pd.Timestamp.now("UTC"),
                        "forced": force,
                        "replaced": current.version if current else None,
                        "rescored": rescored,
                    }
                )
                record["version"] = version
                write_json(self.root / PROMOTED, record)
        except OSError as exc:
            raise _os_failure(f"promote {version}", exc, self.root) from None
        return candidate


def _check_beats_baseline(candidate: ModelVersion) -> None:
    test = candidate.card.get("validation", {}).get("model", {}).get("paired")
    if not test or test.get("baseline") != PROMOTION_BASELINE:
        raise PromotionRefused(
            f"{candidate.version} has no paired test against {PROMOTION_BASELINE} on its card "
            "(trained before the test existed): refused"
        )
    if not test["lower"] > 0:
        raise PromotionRefused(
            f"{candidate.version} scores mean {PROMOTION_METRIC} {test['difference']:+.3f} against "
            f"pysteps {PROMOTION_BASELINE} on its {test['windows']} validation windows, "
            f"{test['confidence']:.0%} interval [{test['lower']:+.3f}, {test['upper']:+.3f}]: "
            f"not surely above it, refused: the forecast cycle does as well without the model"
        )


def _check_beats_current(
    candidate: ModelVersion, current: ModelVersion, rescored: dict[str, float | None] | None
) -> None:
    same_windows = candidate.card.get("validation_windows") is not None and (
        candidate.card.get("validation_windows") == current.card.get("validation_windows")
    )
    if same_windows:
        new, old = candidate.score(), current.score()
        where = "on the same validation windows"
    elif rescored is not None:
        new, old = rescored.get(candidate.version), rescored.get(current.version)
        where = f"both scored again on {candidate.version}'s validation windows"
    else:
        raise PromotionRefused(
            f"{candidate.version} and {current.version} in service were scored on different "
            "windows: refused until both are scored on the same ones",
            rescore=True,
        )
    if new is None or old is None:
        raise PromotionRefused(f"no {PROMOTION_METRIC} to compare ({where}): refused")
    if new < old:
        raise PromotionRefused(
            f"{candidate.version} scores {PROMOTION_METRIC} {new:.3f} < {old:.3f} of "
            f"{current.version} in service ({where}): refused"
        )
