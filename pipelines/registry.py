"""The model registry: a folder of numbered model versions and a record of the promoted one.

    REGISTRY/versions/v0001/model.safetensors   weights + model config (motionrnn checkpoint)
    REGISTRY/versions/v0001/card.json           what it is: run, data, validation scores
    REGISTRY/promoted.json                      the version in service, and the promotion history

A version is written to a temporary folder and renamed into place: it is whole or absent.
Promotion compares validation scores and refuses a model that scores worse than the one in
service unless forced; scores are compared on ``PROMOTION_METRIC`` (CSI at 1 mm/h, higher is
better).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

PROMOTION_METRIC = "csi_1mm"
CHECKPOINT = "model.safetensors"
CARD = "card.json"
_VERSION = re.compile(r"^v(\d{4,})$")


class RegistryError(RuntimeError):
    """A registry operation that cannot be done; the message says why."""


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


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically."""
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


class Registry:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.versions_dir = self.root / "versions"

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
        from motionrnn.checkpoint import checkpoint_metadata  # torch: only to register

        checkpoint = Path(checkpoint)
        try:
            metadata = checkpoint_metadata(checkpoint)
        except Exception as exc:
            raise RegistryError(f"{checkpoint}: not a motionrnn checkpoint ({exc})") from None
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        numbers = [
            int(m.group(1)) for p in self.versions_dir.iterdir() if (m := _VERSION.match(p.name))
        ]
        version = f"v{max(numbers, default=0) + 1:04d}"
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.versions_dir))
        try:
            shutil.copy2(checkpoint, staging / CHECKPOINT)
            full = {
                **card,
                "version": version,
                "registered_at": pd.Timestamp.now("UTC"),
                "checkpoint_metadata": metadata,
            }
            _write_json(staging / CARD, full)
            staging.rename(self.versions_dir / version)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.get(version)

    def _promotions(self) -> dict[str, Any]:
        path = self.root / "promoted.json"
        return json.loads(path.read_text()) if path.exists() else {"version": None, "history": []}

    def promoted(self) -> ModelVersion | None:
        version = self._promotions()["version"]
        return self.get(version) if version else None

    def promote(self, version: str, force: bool = False) -> ModelVersion:
        """Put ``version`` in service, unless it scores worse than the current one."""
        candidate = self.get(version)
        current = self.promoted()
        if current is not None and not force:
            new, old = candidate.score(), current.score()
            if new is None:
                raise RegistryError(f"{version} has no validation {PROMOTION_METRIC}: use --force")
            if old is not None and new < old:
                raise RegistryError(
                    f"{version} scores {PROMOTION_METRIC} {new:.3f} < {old:.3f} of "
                    f"{current.version} in service: refused (use --force to promote anyway)"
                )
        record = self._promotions()
        record["history"].append(
            {
                "version": version,
                "at": pd.Timestamp.now("UTC"),
                "forced": force,
                "replaced": current.version if current else None,
            }
        )
        record["version"] = version
        self.root.mkdir(parents=True, exist_ok=True)
        _write_json(self.root / "promoted.json", record)
        return candidate
