"""The train flow: a Ray Train run on the archive, its registry entry, and promotion if it wins.

The run name is fixed before the training task starts, so that a retry of the task (Prefect
``retries``) continues the same run from its last checkpoint instead of starting over. The new
version (the run's best validation checkpoint) goes into service only if it surely beats pysteps
S-PROG on its validation windows (the paired bootstrap on its card) and scores at least as well
as the one in service on CSI at 1 mm/h, both scored again on the new version's validation
windows when the one in service was validated on others (``pipelines.training.promotion``);
otherwise the flow says why and leaves the service alone.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from pipelines.config import MotioncastConfig, load_config
from pipelines.registry import Registry, RegistryError
from pipelines.training.promotion import promote as promote_version
from pipelines.training.run import TrainResult, new_run_name, train
from pipelines.training.validation import validation_table


@task(name="train", cache_policy=NONE, retries=1)
def train_task(store: str, registry: str, cfg: MotioncastConfig, run_name: str) -> TrainResult:
    return train(store, registry, cfg, run_name=run_name)


def _scores_markdown(result: TrainResult, promoted: bool, note: str) -> str:
    metrics, rows = validation_table(result.version.card["validation"])
    lines = [
        f"# {result.version.version} from run `{result.run_name}`",
        "",
        f"{result.state.step} steps, {result.state.elapsed_s / 60:.1f} min; the registered "
        f"weights are step {result.version.card['best_step']}'s, the best validation. {note}",
        "",
        "| method | " + " | ".join(metrics) + " |",
        "|---" * (len(metrics) + 1) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", f"promoted: {'yes' if promoted else 'no'}"]
    return "\n".join(lines)


@flow(name="train")
def train_flow(
    store: str,
    registry: str,
    config_file: str | None = None,
    overrides: list[str] | None = None,
    run_name: str | None = None,
    promote: bool = True,
) -> dict:
    """Train on ``store``, register in ``registry``, promote the model if it surely beats
    S-PROG and the current one."""
    logger = get_run_logger()
    cfg = load_config(Path(config_file) if config_file else None, overrides)
    run_name = run_name or new_run_name()
    result = train_task(store, registry, cfg, run_name)
    promoted, note = False, "Not promoted (promote=False)."
    if promote:
        try:
            promote_version(
                Registry(registry),
                result.version.version,
                store=store,
                storage=cfg.stores.object_storage,
            )
            promoted, note = True, f"{result.version.version} is in service."
        except RegistryError as exc:
            note = f"Not promoted: {exc}."
            logger.warning(note)
    create_markdown_artifact(
        markdown=_scores_markdown(result, promoted, note),
        key="training-summary",
        description="The new model's validation scores against the baselines",
    )
    logger.info(note)
    return {
        "run": result.run_name,
        "version": result.version.version,
        "promoted": promoted,
        "steps": result.state.step,
        "validation": result.version.card["validation"],
    }
