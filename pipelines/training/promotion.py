"""Putting a registered version in service: the registry's rules (``Registry.promote``), with
both versions scored again on the candidate's validation windows when their cards hold
different ones. The CLI's ``models promote`` and the train flow promote through here."""

from __future__ import annotations

from pipelines.config import ObjectStorageConfig, TrainingConfig
from pipelines.registry import PROMOTION_METRIC, ModelVersion, PromotionRefused, Registry


def rescore(
    registry: Registry, version: str, store: str, storage: ObjectStorageConfig | None = None
) -> dict[str, float | None] | None:
    """The candidate ``version`` and the version in service scored on the candidate's
    validation windows of ``store``; None when there is nothing to compare again (none in
    service, or the same windows)."""
    from motionrnn import load_checkpoint
    from pipelines.training.evaluate import score_models
    from pipelines.training.windows import Window

    candidate, current = registry.get(version), registry.promoted()
    if current is None or current.version == version:
        return None
    windows = candidate.card.get("validation_windows")
    if windows is None or windows == current.card.get("validation_windows"):
        return None
    t = TrainingConfig.model_validate(
        {**candidate.card["training"], "model": candidate.card["model_config"]}
    )
    models = {v.version: load_checkpoint(v.checkpoint) for v in (candidate, current)}
    frames = {(m.config.frames_in, m.config.frames_out) for m in models.values()}
    if len(frames) > 1:
        raise PromotionRefused(
            f"{version} and {current.version} take different frames: they cannot be scored on "
            "the same windows"
        )
    scores = score_models(
        store,
        [Window.from_json(w) for w in windows],
        models,
        t,
        snapshot=candidate.card["data"]["snapshot"],
        baselines=[],
        storage=storage,
    )
    return {name: scores[name].summary().get(PROMOTION_METRIC) for name in models}


def promote(
    registry: Registry,
    version: str,
    store: str | None = None,
    force: bool = False,
    storage: ObjectStorageConfig | None = None,
) -> ModelVersion:
    """Put ``version`` in service under the registry's rules (all waived by ``force``); with
    ``store``, a version in service validated on other windows is compared on the candidate's
    (``rescore``) instead of refused."""
    rescored = None if store is None or force else rescore(registry, version, store, storage)
    return registry.promote(version, force=force, rescored=rescored)
