"""The one typed configuration of motioncast.

Defaults live in this schema; ``pipelines/default_config.yaml`` documents them (a test keeps the
two identical). A user YAML overrides any subset, and the CLI overrides both (specific flags, or
``--set section.key=value`` for anything).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import pyproj
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from motionrnn.config import MotionRNNConfig, PriorPart
from pipelines.grid import Grid

log = logging.getLogger(__name__)

DEFAULT_CONFIG_FILE = Path(__file__).with_name("default_config.yaml")
TOKEN_ENV = "MOTIONCAST_API_TOKEN"  # the forecast API's bearer token, over serve.token_file


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DomainConfig(_Section):
    """A named grid, of one of two kinds: its own (crs, extent, resolution), onto which every
    source is resampled; or a region cut from one source's native grid (source, bbox), whose
    cells are kept as the source gives them, so that only the region forecast for is archived."""

    crs: str | None = Field(
        None, description="Anything pyproj.CRS accepts: 'EPSG:3035', a proj4 string, WKT."
    )
    extent: tuple[float, float, float, float] | None = Field(
        None, description="xmin, ymin, xmax, ymax of the grid's outer edges, in CRS metres."
    )
    resolution: float | None = Field(None, gt=0, description="Cell size in CRS metres.")
    source: str | None = Field(
        None,
        description="Cut this source's native grid (knmi, mch, rmi, opera, mrms, ...) to bbox "
        "instead of resampling: its files go to this domain.",
    )
    bbox: tuple[float, float, float, float] | None = Field(
        None,
        description="xmin, ymin, xmax, ymax of the region to keep, in bbox_crs: the cut holds "
        "every source cell the box touches.",
    )
    bbox_crs: str = Field(
        "source",
        description="CRS of bbox: 'source' (the source's own coordinates) or anything "
        "pyproj.CRS accepts ('EPSG:4326': longitude and latitude).",
    )
    time_step_minutes: int | None = Field(
        None, gt=0, description="Nominal interval between frames; null: the source's own."
    )
    radars: list[str] = Field(
        [], description="Radars expected in this domain's mosaic (node names); empty: any."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> DomainConfig:
        own = (self.crs, self.extent, self.resolution)
        cut = (self.source, self.bbox)
        if all(v is not None for v in own) and all(v is None for v in cut):
            if self.bbox_crs != "source":
                raise ValueError("bbox_crs belongs to a cut of a source (source, bbox)")
            return self
        if all(v is not None for v in cut) and all(v is None for v in own):
            xmin, ymin, xmax, ymax = self.bbox
            if not (xmin < xmax and ymin < ymax):
                raise ValueError(f"bbox {list(self.bbox)} is not xmin, ymin, xmax, ymax")
            if self.bbox_crs != "source":
                try:
                    pyproj.CRS(self.bbox_crs)
                except pyproj.exceptions.CRSError as exc:
                    raise ValueError(f"bbox_crs {self.bbox_crs!r}: {exc}") from None
            return self
        raise ValueError(
            "a domain is either its own grid (crs, extent, resolution) or a cut of one "
            "source (source, bbox), not a mix"
        )

    def grid(self, native: Grid | None = None) -> Grid:
        """The domain's grid: its own, or the cut of ``native`` (the source's grid) to bbox
        (ValueError when they do not overlap)."""
        if self.source is None:
            return Grid.from_extent(self.crs, self.extent, self.resolution)
        if native is None:
            raise ValueError(f"a cut of source {self.source!r} needs that source's grid")
        return native.window(self.bbox, None if self.bbox_crs == "source" else self.bbox_crs)


class ZRConfig(_Section):
    """Z = a R^b, reflectivity Z in mm^6 m^-3 and rain rate R in mm/h (Marshall-Palmer)."""

    a: float = 200.0
    b: float = 1.6
    min_dbz: float = Field(7.0, description="Below this reflectivity a gate is dry (0 mm/h).")


class ObjectStorageConfig(_Section):
    """S3-compatible object storage for s3:// store locations. Unset fields come from the
    standard environment variables (AWS_ENDPOINT_URL(_S3), AWS_REGION / AWS_DEFAULT_REGION,
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), so secrets need not be in YAML."""

    endpoint_url: str | None = Field(
        None, description="S3 API endpoint, e.g. http://127.0.0.1:9000 (MinIO, Ceph, moto)."
    )
    region: str | None = Field(None, description="Bucket region.")
    allow_http: bool | None = Field(
        None, description="Allow plain http (default: when endpoint_url starts with http://)."
    )
    force_path_style: bool = Field(
        True, description="bucket in the URL path, not the host name (most S3-compatible servers)."
    )
    access_key_id: str | None = None
    secret_access_key: str | None = None
    commit_tries: int = Field(
        8,
        ge=1,
        description="Attempts of a commit that lost a race to another writer (with a growing, "
        "random wait between them).",
    )


def _location(value: Any) -> str:
    """A store location: a URL (s3://, gs://) kept as given, or a local path."""
    text = str(value)
    return text if "://" in text else str(Path(text).expanduser())


StoreLocation = Annotated[str, BeforeValidator(_location)]


class ArchiveStoreConfig(_Section):
    location: StoreLocation = Field(
        "data/archive", description="Archive store (Icechunk repository): a folder or s3://..."
    )
    chunk_yx: int = Field(
        1024,
        gt=0,
        description="Spatial chunk edge of precip (one frame deep): whole frames up to "
        "this size compress and write fastest.",
    )
    compression_level: int = Field(1, ge=0, le=22, description="Zstandard level for precip.")
    time_block_hours: float = Field(
        24.0,
        gt=0,
        description="A domain's time axis grows in blocks of this length, ahead of the frames.",
    )


class ForecastStoreConfig(_Section):
    location: StoreLocation = Field(
        "data/forecasts", description="Forecast store (Icechunk repository): a folder or s3://..."
    )
    chunk_yx: int = Field(
        64,
        gt=0,
        description="Spatial chunk edge of stored forecasts; a chunk holds one issue time and "
        "every lead.",
    )
    compression_level: int = Field(1, ge=0, le=22, description="Zstandard level for precip.")
    audit_days: float = Field(
        7.0,
        gt=0,
        description="Maintenance keeps the history (the audit trail of what was issued when) "
        "this far back; older snapshots expire and their unreferenced data are deleted.",
    )


class ScoresStoreConfig(_Section):
    location: StoreLocation = Field(
        "data/scores",
        description="Scores store (Icechunk repository): per issue time and method, pysteps' "
        "accumulated sums, so any period pools exactly.",
    )
    audit_days: float = Field(
        30.0,
        gt=0,
        description="Store maintenance (forecast.maintenance_cron) keeps the scores store's "
        "history this far back; every score stays, older snapshots expire.",
    )


class StoresConfig(_Section):
    """The three stores (archive, forecasts, scores) and the object storage they may lie on."""

    object_storage: ObjectStorageConfig = ObjectStorageConfig()
    archive: ArchiveStoreConfig = ArchiveStoreConfig()
    forecasts: ForecastStoreConfig = ForecastStoreConfig()
    scores: ScoresStoreConfig = ScoresStoreConfig()


# the keys of the stores' settings before the stores: section (section, key) -> its path now
OLD_STORE_KEYS: dict[tuple[str, str], tuple[str, ...]] = {
    ("store", "archive"): ("archive", "location"),
    ("store", "object_storage"): ("object_storage",),
    ("store", "chunk_yx"): ("archive", "chunk_yx"),
    ("store", "compression_level"): ("archive", "compression_level"),
    ("store", "time_block_hours"): ("archive", "time_block_hours"),
    ("forecast", "store"): ("forecasts", "location"),
    ("forecast", "chunk_yx"): ("forecasts", "chunk_yx"),
    ("forecast", "compression_level"): ("forecasts", "compression_level"),
    ("forecast", "audit_days"): ("forecasts", "audit_days"),
    ("verify", "store"): ("scores", "location"),
    ("verify", "audit_days"): ("scores", "audit_days"),
}


def _moved_store_keys(data: dict[str, Any]) -> dict[str, Any]:
    """A configuration with the old store keys (``OLD_STORE_KEYS``) read into ``stores:``, one
    warning for each; a key given both ways keeps the new one."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    stores = dict(out.get("stores") or {})
    for (section, key), path in OLD_STORE_KEYS.items():
        old = out.get(section)
        if not isinstance(old, dict) or key not in old:
            continue
        value = old.pop(key)
        new = "stores." + ".".join(path)
        log.warning("configuration: %s.%s is now %s (read as that)", section, key, new)
        node = stores
        for part in path[:-1]:
            node[part] = node = dict(node.get(part) or {})
        node.setdefault(path[-1], value)
        if section == "store" and not old:
            del out[section]
    if stores:
        out["stores"] = stores
    return out


class PolarConfig(_Section):
    """How a polar volume becomes a frame, and its site domain when no configured one takes it."""

    site_domain_size_km: float = Field(400.0, gt=0, description="Edge of the site-centred domain.")
    site_domain_resolution_m: float = Field(1000.0, gt=0)
    max_range_km: float = Field(200.0, gt=0, description="Gates beyond this range are unknown.")
    product: Literal["lowest", "cappi"] = Field(
        "lowest", description="Lowest sweep (pseudo-CAPPI) or CAPPI at cappi_height_m."
    )
    cappi_height_m: float = Field(1500.0, gt=0, description="CAPPI height above sea level.")
    interpolation: Literal["nearest", "idw"] = "nearest"
    idw_neighbours: int = Field(4, ge=2, description="Gates averaged per cell by idw.")
    idw_power: float = Field(2.0, gt=0, description="Inverse-distance weight exponent.")
    slot_tolerance_minutes: float = Field(
        2.5, ge=0, le=2.5, description="A volume's nominal time may be this far from its slot."
    )


class MosaicConfig(_Section):
    """How radars in one configured domain are merged per 5-minute slot."""

    method: Literal["max", "distance_weighted"] = Field(
        "max", description="Per cell: the largest rate, or rates weighted by 1/distance^2."
    )
    deadline_minutes: float = Field(
        10.0, ge=0, description="A slot missing expected radars is written this long after it."
    )


class IngestConfig(_Section):
    quarantine: Path | None = Field(
        None, description="Where bad files go; default: '<archive>.quarantine' beside the store."
    )
    quarantine_action: Literal["copy", "move"] = "copy"
    batch_size: int = Field(64, gt=0, description="Frames per store commit.")
    batch_megabytes: float = Field(
        128.0,
        gt=0,
        description="A batch is committed once its frames hold this much (float32), even with "
        "fewer than batch_size frames: memory stays a few frames on continental grids (an MRMS "
        "frame is 98 MB, an OPERA frame 17 MB, a KNMI frame 2 MB). One batch fills while the "
        "one before is written: ingest holds up to twice this, and ingest.decode_ahead frames.",
    )
    workers: int = Field(2, ge=1, description="Decoding processes (CLI) or local Dask workers.")
    decode_ahead: int | None = Field(
        None,
        ge=1,
        description="Files decoded ahead of the committing process, at most (decoding or "
        "waiting): memory stays a few frames however many files. Null: twice ingest.workers "
        "(set it to the cluster's size with ingest.dask_address).",
    )
    dask_address: str | None = Field(None, description="Dask scheduler address for the flow.")
    retries: int = Field(2, ge=0, description="Retries of a decode on a transient (I/O) error.")
    retry_delay_seconds: float = Field(1.0, ge=0)
    max_future_minutes: float = Field(
        15.0, ge=0, description="A frame stamped further ahead of the wall clock is rejected."
    )
    earliest_time: str = Field("1990-01-01", description="A frame stamped before this is rejected.")
    max_invalid_share: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Impossible cells (negative, implausibly high) become unknown (NaN); a frame "
        "with a larger share of them among its valued cells is rejected.",
    )
    polar: PolarConfig = PolarConfig()
    mosaic: MosaicConfig = MosaicConfig()


class SimRadar(_Section):
    id: str = Field(description="Node name (ODIM NOD), also the name of its site domain.")
    lat: float
    lon: float
    height_m: float = 50.0
    encoding: Literal["uint8", "uint16"] = "uint8"
    blocked_sector_deg: tuple[float, float] | None = Field(
        None, description="Azimuth sector (from, to) that the lowest sweep cannot see (nodata)."
    )


class SimulatorConfig(_Section):
    """The synthetic radar network and the weather it observes."""

    radars: list[SimRadar] = [
        SimRadar(id="sim01", lat=52.00, lon=4.60, encoding="uint8", blocked_sector_deg=(40, 48)),
        SimRadar(id="sim02", lat=52.15, lon=6.30, encoding="uint16"),
        SimRadar(id="sim03", lat=51.00, lon=5.40, encoding="uint8"),
        SimRadar(id="sim04", lat=53.10, lon=5.50, encoding="uint16"),
    ]
    interval_minutes: int = Field(5, gt=0)
    elevations_deg: list[float] = [0.5, 1.5, 2.5, 4.0, 7.0, 12.0]
    n_rays: int = 360
    gate_m: float = 500.0
    n_gates: int = 400
    sweep_seconds: float = Field(30.0, description="Time between successive sweep starts.")
    grid_resolution_m: float = Field(1000.0, description="Resolution of the simulated truth field.")
    margin_km: float = Field(80.0, description="Truth field margin beyond the farthest gate.")
    wet_fraction: tuple[float, float] = Field((0.08, 0.35), description="Range of wet area share.")
    edge_rain_mm_h: float = Field(0.15, description="Rain rate at the edge of a wet area.")
    intensity_slope: float = Field(2.4, description="Growth of log rain rate into a wet area.")
    max_rain_mm_h: float = 200.0
    spectral_slope: float = Field(3.2, description="Power-law slope of the rain field's spectrum.")
    band_edges_km: list[float] = Field([128.0, 32.0, 8.0], description="Cascade scale bands.")
    band_memory: list[float] = Field(
        [0.995, 0.98, 0.92, 0.7], description="Lag-1 autocorrelation per band (large to small)."
    )
    mean_speed_m_s: tuple[float, float] = (6.0, 16.0)
    acceleration_m_s_per_h: tuple[float, float] = (-3.0, 3.0)
    turning_deg_per_h: tuple[float, float] = (-30.0, 30.0)
    vortex_speed_m_s: tuple[float, float] = (3.0, 9.0)
    vortex_radius_km: tuple[float, float] = (60.0, 150.0)
    shear_per_s: tuple[float, float] = (-2.5e-5, 2.5e-5)
    divergence_per_s: tuple[float, float] = (-1.0e-5, 0.5e-5)
    cells_per_hour: float = Field(12.0, description="Birth rate of convective cells.")
    freezing_level_km: float = 3.0
    dbz_lapse_per_km: float = Field(6.0, description="Reflectivity loss above the freezing level.")
    noise_db: float = Field(1.0, description="Measurement noise (std) added to reflectivity.")
    sensitivity_dbz_at_10km: float = Field(
        -20.0, description="Weakest echo detected at 10 km; falls off as 20 log10(range)."
    )


class TransformConfig(_Section):
    """Rain rate to the model's scale, as pysteps' dB transform, then mapped to about [0, 1]."""

    threshold_mm_h: float = Field(0.1, gt=0, description="Below this: no rain.")
    zerovalue_db: float = Field(-15.0, description="dB value given to no rain.")
    max_db: float = Field(23.0, description="dB value mapped to 1 (23 dB = 200 mm/h).")


class DataConfig(_Section):
    """Training windows drawn from the archive."""

    domains: list[str] = Field([], description="Archive domains to train on; empty: all.")
    frames_in: int = Field(6, ge=1)
    frames_out: int = Field(12, ge=1)
    crop: int = Field(128, gt=0, description="Edge of the random square crop (cells).")
    wet_floor: float = Field(
        0.02, ge=0, description="Sampling weight of a window is its wet share plus this floor."
    )
    block_hours: float = Field(6.0, gt=0, description="Length of the time blocks of the split.")
    gap_windows: float = Field(
        1.0, ge=0, description="Least gap between windows of different splits, in window lengths."
    )
    split: tuple[float, float, float] = Field(
        (0.8, 0.1, 0.1), description="Shares of blocks for train, validation, test."
    )
    seed: int = 0
    events: dict[str, Literal["train", "validation", "test"]] = Field(
        {},
        description="Split by event instead of by time block: 'domain@YYYY-MM-DD' (a domain's "
        "frames of that UTC day) or 'domain' -> its split; events not named train. Empty: the "
        "hash split of time blocks (block_hours, split, seed).",
    )
    transform: TransformConfig = TransformConfig()
    motion_cache: int = Field(
        128, ge=0, description="Windows whose motion prior each process keeps (2 bytes a cell)."
    )
    frame_cache: int = Field(
        128,
        ge=0,
        description="Decoded frames each process keeps (4 bytes a cell): windows overlap, so "
        "most frames of a window were read for another.",
    )
    prior_cache: int = Field(
        64,
        ge=0,
        description="Windows whose sprog prior each process keeps (4 x frames_out bytes a "
        "cell): computing one on a whole domain takes about a second.",
    )


class OptimiserConfig(_Section):
    """AdamW with linear warm-up then cosine decay over the run's budget, and norm clipping."""

    lr: float = Field(1e-3, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0)
    offset_lr_scale: float = Field(
        0.1, gt=0, description="Learning-rate factor of the MotionGRU offset and mask gates."
    )
    prior_lr: float = Field(
        0.05, gt=0, description="Peak learning rate of the sprog prior's few parameters."
    )
    warmup_fraction: float = Field(0.05, ge=0, lt=1, description="Share of the budget warming up.")
    min_lr_fraction: float = Field(0.05, ge=0, le=1, description="Final lr as a share of lr.")
    clip_norm: float = Field(1.0, gt=0, description="Gradient norm clipping threshold.")


class LossConfig(_Section):
    """The training loss over covered cells (unknown cells never count), on the model scale:
    mse * B-MSE + mae * B-MAE, each cell weighted by the observed rain rate (TrajGRU's balanced
    losses, Shi et al. 2017), plus fss * (1 - soft FSS) at fss_mm_h (and optionally a soft-CSI
    event term), plus a smoothness penalty on the learned motion corrections."""

    mse: float = Field(1.0, ge=0, description="Weight of the (balanced) squared error.")
    mae: float = Field(1.0, ge=0, description="Weight of the (balanced) absolute error.")
    intensity_mm_h: list[float] = Field(
        [2.0, 5.0, 10.0, 30.0], description="Rain-rate edges of the weight classes (mm/h)."
    )
    intensity_weights: list[float] = Field(
        [1.0, 2.0, 5.0, 10.0, 30.0],
        description="Weight of each class: below the first edge, between edges, above the last.",
    )
    events: float = Field(
        0.0, ge=0, description="Weight of the event term: 1 - soft CSI at events_mm_h."
    )
    events_mm_h: list[float] = Field(
        [1.0, 5.0], description="Thresholds of the events of the event term (mm/h)."
    )
    events_softness_db: float = Field(
        1.0, gt=0, description="Width of the soft event step around each threshold (dB)."
    )
    fss: float = Field(
        0.5, ge=0, description="Weight of the fractions-skill term: 1 - soft FSS at fss_mm_h."
    )
    fss_mm_h: list[float] = Field([1.0, 5.0], description="Thresholds of the FSS term (mm/h).")
    fss_window: int = Field(
        15,
        ge=1,
        description="Edge of the FSS term's neighbourhood (cells, odd: 15 = 15 km at 1 km).",
    )
    fss_softness_db: float = Field(
        2.0, gt=0, description="Width of the FSS term's soft event step (dB)."
    )
    motion_smoothness: float = Field(
        0.01, ge=0, description="Weight of the squared gradient of the learned motion correction."
    )

    @model_validator(mode="after")
    def _classes(self) -> LossConfig:
        if len(self.intensity_weights) != len(self.intensity_mm_h) + 1:
            raise ValueError("intensity_weights needs one weight more than intensity_mm_h")
        if sorted(self.intensity_mm_h) != self.intensity_mm_h:
            raise ValueError("intensity_mm_h must increase")
        if self.fss_window % 2 == 0:
            raise ValueError(f"fss_window must be odd, got {self.fss_window}")
        return self


class SamplingConfig(_Section):
    """Teacher forcing during training (motionrnn.training), on the share of the budget used.

    The advective model starts as the extrapolation nowcast, so it learns on its own rollouts
    from the first step (``none``): fed true frames, it would learn one-step corrections whose
    decay compounds over a 12-step rollout. A direct-output model (``model.output: frame``)
    starts from noise and wants the paper's ``reverse``."""

    method: Literal["reverse", "scheduled", "none"] = Field(
        "none",
        description="none: always the model's own forecasts after the inputs; reverse: "
        "PredRNN-V2's reverse scheduled sampling; scheduled: PredRNN's.",
    )
    start: float = Field(
        0.25, ge=0, le=1, description="reverse: budget share where the schedules start moving."
    )
    end: float = Field(
        0.5, ge=0, le=1, description="Budget share from which no true future frame is fed."
    )


class ScalingSection(_Section):
    """Where and how wide training runs (Ray Train)."""

    address: str | None = Field(
        None, description="Ray cluster address ('auto': the running cluster); None: start one here."
    )
    workers: int = Field(2, ge=1, description="Training workers (DDP processes).")
    min_workers: int | None = Field(
        None,
        ge=1,
        description="Elastic training: when nodes are lost, go on from the last checkpoint with "
        "as few as this many workers (and grow back to workers); null: always workers.",
    )
    resize_every_s: float = Field(
        60.0,
        gt=0,
        description="Elastic training: how often a running worker group looks for room to grow "
        "back to workers (a run may start with fewer when the cluster is still coming up).",
    )
    use_gpu: bool = Field(False, description="One GPU per worker (CUDA, bf16 autocast).")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved (and torch threads).")
    loader_workers: int = Field(
        0, ge=0, description="Data-loader processes per worker (0: read in the training process)."
    )
    storage: StoreLocation = Field(
        "data/runs",
        description="Run folders (checkpoints, so that a run can resume): a folder, or s3://... "
        "(stores.object_storage) shared by every node of a cluster.",
    )
    max_failures: int = Field(
        2, ge=-1, description="Worker-group restarts from the last checkpoint (-1: no limit)."
    )
    checkpoints_to_keep: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _elastic_range(self) -> ScalingSection:
        if self.min_workers is not None and self.min_workers > self.workers:
            raise ValueError(f"min_workers {self.min_workers} exceeds workers {self.workers}")
        return self


class TrainingConfig(_Section):
    data: DataConfig = DataConfig()
    model: MotionRNNConfig = Field(
        MotionRNNConfig(), description="motionrnn.MotionRNNConfig; frames follow data's."
    )
    init_checkpoint: Path | None = Field(
        None,
        description="Start from these weights (a motionrnn checkpoint, e.g. a registry "
        "version's model.safetensors) instead of random ones: fine-tuning.",
    )
    optimiser: OptimiserConfig = OptimiserConfig()
    loss: LossConfig = LossConfig()
    sampling: SamplingConfig = SamplingConfig()
    scaling: ScalingSection = ScalingSection()
    batch_size: int = Field(8, ge=1, description="Windows per step per worker.")
    steps_per_epoch: int = Field(100, ge=1, description="Optimiser steps between validations.")
    max_steps: int = Field(2000, ge=1, description="Step budget of a run.")
    max_minutes: float | None = Field(
        None, gt=0, description="Time budget of the training loop; the first budget spent ends it."
    )
    validation_windows: int = Field(
        64, ge=1, description="Validation windows scored per epoch (evenly spread over the split)."
    )
    validation_area: Literal["domain", "crop"] = Field(
        "domain",
        description="domain: whole domain grids (cut to a multiple of model.patch); "
        "crop: centred crops of data.crop.",
    )
    thresholds_mm_h: list[float] = Field(
        [1.0, 5.0, 10.0],
        description="CSI thresholds scored (event: rate > threshold); 1 mm/h (which decides "
        "promotion) is a must.",
    )
    fss_thresholds_mm_h: list[float] = Field([1.0, 5.0], description="FSS thresholds scored.")
    fss_scales: list[int] = Field([10], description="FSS neighbourhood edges scored (cells).")
    amp: bool = Field(True, description="bf16 autocast on GPU (CPU always trains in float32).")
    prior_share: float = Field(
        0.3,
        ge=0,
        le=1,
        description="The sprog model: the epochs that start before this share of the budget "
        "train its prior alone, on whole domains (prior_batch windows a step); the rest train "
        "the recurrent stack on crops, the prior frozen.",
    )
    prior_batch: int = Field(2, ge=1, description="Whole-domain windows per prior step per worker.")
    prior_learns: list[PriorPart] = Field(
        ["blend", "trend"],
        description="What the prior's stage trains (motionrnn.prior.PARTS): the per-level, "
        "per-lead gains, the heavy-rain blend, the distribution's trend; the rest stays at its "
        "start (S-PROG's). The gains sharpen mid scales: CSI at 5 mm/h up, at 1 mm/h down.",
    )
    heavy_rain_mm_h: float = Field(
        10.0, gt=0, description="The sprog model's prior blends in extrapolation above this rate."
    )
    heavy_rain_width_db: float = Field(2.0, gt=0, description="Width of that blend's step (dB).")

    @model_validator(mode="before")
    @classmethod
    def _model_frames_from_data(cls, values: Any) -> Any:
        """The model's frames default to the data's: setting data.frames_* is enough."""
        if isinstance(values, dict) and isinstance(values.get("data"), dict):
            model = values.get("model")
            if model is None or isinstance(model, dict):
                model = dict(model or {})
                for key in ("frames_in", "frames_out"):
                    if key in values["data"]:
                        model.setdefault(key, values["data"][key])
                values = {**values, "model": model}
        return values

    @model_validator(mode="after")
    def _model_scale_from_transform(self) -> TrainingConfig:
        """The sprog model's rain levels on its scale, from the data's transform."""
        t = self.data.transform
        span = t.max_db - t.zerovalue_db

        def level(db: float) -> float:
            return (db - t.zerovalue_db) / span

        self.model = dataclasses.replace(
            self.model,
            wet_level=level(10.0 * math.log10(t.threshold_mm_h)),
            heavy_level=level(10.0 * math.log10(self.heavy_rain_mm_h)),
            heavy_width=self.heavy_rain_width_db / span,
        )
        return self

    @model_validator(mode="after")
    def _frames_agree(self) -> TrainingConfig:
        m, d = self.model, self.data
        if (m.frames_in, m.frames_out) != (d.frames_in, d.frames_out):
            raise ValueError(
                f"model frames {m.frames_in} + {m.frames_out} differ from data frames "
                f"{d.frames_in} + {d.frames_out}: set both"
            )
        if 1.0 not in self.thresholds_mm_h:
            raise ValueError("thresholds_mm_h must hold 1.0: CSI at 1 mm/h decides promotion")
        if m.channels != 1:
            raise ValueError("model.channels must be 1 (rain rate)")
        if d.crop % m.patch:
            raise ValueError(f"data.crop {d.crop} is not a multiple of model.patch {m.patch}")
        return self


class ForecastConfig(_Section):
    """Issuing forecasts: where they go, which method, and the rules of the forecast cycle."""

    registry: Path = Field(
        Path("data/registry"), description="Model registry: 'motionrnn' uses its promoted version."
    )
    method: Literal["motionrnn", "sprog", "extrapolation", "persistence"] = Field(
        "motionrnn", description="What a forecast is made with."
    )
    fallback: Literal["auto", "sprog", "extrapolation", "persistence"] = Field(
        "auto",
        description="What the cycle issues when the model service is down, fails or is late; "
        "auto: S-PROG (the best classical nowcast) on domains of at most sprog_max_cells cells, "
        "extrapolation on larger ones.",
    )
    sprog_max_cells: int = Field(
        2_000_000,
        gt=0,
        description="Largest domain (cells) the auto fallback issues S-PROG for: about what S-PROG "
        "makes within deadline_seconds on 2 CPU cores (bench/fallback.py: 2.8 s at 512 x 512, "
        "14 s at 1024 x 1024, 62 s at 2200 x 1900; extrapolation 5 x faster).",
    )
    precision: Literal["float32", "bfloat16"] = Field(
        "float32",
        description="Arithmetic of the model at inference: bfloat16 (autocast) is ~1.3 x faster "
        "on a CPU with AMX and on GPUs, and moves values by ~0.002 mm/h on average.",
    )
    frames_in: int = Field(
        6,
        ge=4,
        description="Input frames per forecast, ending at the issue time (the motion prior uses "
        "the last 4; a model its own number, at most this).",
    )
    lead_minutes: int = Field(
        60, gt=0, description="Leads: every time step of the domain up to this many minutes."
    )
    max_input_age_minutes: float = Field(
        15.0,
        gt=0,
        description="The cycle issues nothing when the newest complete input window ends "
        "longer ago than this (a stale forecast has no value).",
    )
    deadline_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="One deadline for the whole cycle: the service's forecasts for every domain "
        "are awaited this long from the cycle's start; what is not in by then is cancelled on "
        "the service and issued by the fallback.",
    )
    catch_up_max: int = Field(
        288,
        ge=1,
        description="Issue times one cycle issues at most per domain (newest first): every "
        "complete window not yet forecast within max_input_age_minutes, or with catch_up since "
        "the newest stored forecast.",
    )
    cron: str = Field(
        "1-59/5 * * * *",
        description="Schedule of the forecast cycle: every 5 minutes, a minute after the radar.",
    )
    maintenance_cron: str = Field(
        "17 3 * * *", description="Schedule of store maintenance (forecast and scores stores)."
    )


class VerifyConfig(_Section):
    """Verification of the issued forecasts against what the radar then observed."""

    baselines: list[Literal["persistence", "extrapolation", "sprog"]] = Field(
        ["persistence", "extrapolation"],
        description="Methods scored beside each issued forecast, on its input frames and cells.",
    )
    thresholds_mm_h: list[float] = Field(
        [0.1, 1.0, 5.0, 10.0], description="CSI, POD, FAR and frequency bias thresholds (event: >)."
    )
    fss_thresholds_mm_h: list[float] = Field([1.0, 5.0], description="FSS thresholds.")
    fss_scales: list[int] = Field(
        [1, 3, 5, 10, 20], description="FSS neighbourhood edges in cells (the domain's resolution)."
    )
    grace_minutes: float = Field(
        60.0,
        ge=0,
        description="A forecast is scored once every valid time is observed, or this long after "
        "its last valid time (a frame that never came then scores no cells).",
    )
    cron: str = Field("7 * * * *", description="Schedule of the verification flow: hourly.")

    @field_validator("thresholds_mm_h", "fss_thresholds_mm_h", "fss_scales")
    @classmethod
    def _sorted_unique(cls, v: list) -> list:
        if not v or sorted(set(v)) != v:
            raise ValueError("give at least one value, ascending, each once")
        return v


class SiteConfig(_Section):
    name: str
    lon: float
    lat: float


class PlotConfig(_Section):
    """Maps and animations (motioncast plot, the API's PNG)."""

    sites: list[SiteConfig] = Field(
        [], description="Radar sites marked on maps (those inside the domain); name, lon, lat."
    )
    gif_frame_ms: int = Field(600, gt=0, description="Time each lead is shown in an animation.")


class ServeConfig(_Section):
    """The forecast service (Ray Serve): where it listens, where clients reach it, how it
    batches, and how its model replica follows the registry.

    The bearer token is never configuration (it would show in ``ps`` and in Prefect's stored
    deployment parameters): it comes from the environment (MOTIONCAST_API_TOKEN) or a file."""

    host: str = Field(
        "127.0.0.1",
        description="Address the HTTP server binds; 0.0.0.0 exposes it beyond this host.",
    )
    port: int = Field(8000, ge=1, le=65535)
    url: str | None = Field(
        None,
        description="Where clients (the forecast cycle) reach the API, e.g. "
        "http://motioncast-serve-svc:8000 on a cluster; null: http://<host>:<port> on this "
        "machine (127.0.0.1 when host binds every address).",
    )
    app_name: str = Field("motioncast", description="Serve application name.")
    token_file: Path | None = Field(
        None,
        description="File holding the bearer token every route but /healthz requires (a mounted "
        "secret); MOTIONCAST_API_TOKEN overrides it; neither: no token.",
    )
    docs: bool = Field(
        False,
        description="Serve the OpenAPI schema and docs pages (/openapi.json, /docs); they "
        "require the token like every route but /healthz.",
    )
    max_batch_size: int = Field(8, ge=1, description="Forecasts per model call (one grid size).")
    batch_wait_ms: float = Field(20.0, ge=0, description="Wait for a batch to fill.")
    poll_seconds: float = Field(
        5.0, gt=0, description="How often the model replica looks for a newly promoted version."
    )
    retry_max_seconds: float = Field(
        300.0,
        gt=0,
        description="A promoted model that fails to load is tried again after poll_seconds, "
        "doubling up to this; the model in service meanwhile stays.",
    )
    compile: bool = Field(
        False,
        description="torch.compile the model's time step (1.2-1.4 x faster per forecast; it "
        "compiles at load, in a warm-up forecast per archive grid, ~12 s each on CPU).",
    )
    model_cpus: float = Field(1.0, gt=0, description="CPUs of the model replica (torch threads).")

    @model_validator(mode="before")
    @classmethod
    def _no_token(cls, data: Any) -> Any:
        if isinstance(data, dict) and "token" in data:
            raise ValueError(
                "serve.token is not read from configuration (it would show in ps and in "
                f"Prefect's deployment parameters): set {TOKEN_ENV} or serve.token_file"
            )
        return data

    def bearer_token(self) -> str | None:
        """The API token: the environment's MOTIONCAST_API_TOKEN, else ``token_file``'s text."""
        if os.environ.get(TOKEN_ENV):
            return os.environ[TOKEN_ENV]
        if self.token_file is None:
            return None
        try:
            token = self.token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"serve.token_file {self.token_file}: {exc.strerror}") from None
        if not token:
            raise ConfigError(f"serve.token_file {self.token_file} is empty")
        return token

    def client_url(self) -> str:
        """Where a client reaches the API: ``url``, else this machine's address of ``host``."""
        if self.url:
            return self.url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


class SystemConfig(_Section):
    """``motioncast up``: the whole system on this machine."""

    home: Path = Field(
        Path(".motioncast"), description="State, logs and Prefect's database (SQLite) of 'up'."
    )
    prefect_port: int = Field(4200, ge=1, le=65535, description="Prefect's server, on 127.0.0.1.")
    ray_cpus: int | None = Field(None, ge=1, description="CPUs of the local Ray; null: all.")
    inbox: Path = Field(Path("data/inbox"), description="Folder the ingest deployment watches.")
    ingest_every_seconds: float = Field(60.0, gt=0, description="How often the inbox is read.")
    start_timeout_seconds: float = Field(
        240.0, gt=0, description="How long 'up' waits for each part to answer."
    )
    restart_max_seconds: float = Field(
        60.0,
        gt=0,
        description="A process of 'up' that exits is restarted after 1 s, doubling up to this; "
        "one that ran this long starts again from 1 s.",
    )
    stop_seconds: float = Field(
        20.0, gt=0, description="'down' waits this long for each process to stop, then kills it."
    )


class MotioncastConfig(_Section):
    domains: dict[str, DomainConfig] = {}
    stores: StoresConfig = StoresConfig()
    zr: ZRConfig = ZRConfig()
    ingest: IngestConfig = IngestConfig()
    simulate: SimulatorConfig = SimulatorConfig()
    training: TrainingConfig = TrainingConfig()
    forecast: ForecastConfig = ForecastConfig()
    serve: ServeConfig = ServeConfig()
    verify: VerifyConfig = VerifyConfig()
    plot: PlotConfig = PlotConfig()
    system: SystemConfig = SystemConfig()

    @model_validator(mode="before")
    @classmethod
    def _old_store_keys(cls, data: Any) -> Any:
        return _moved_store_keys(data) if isinstance(data, dict) else data

    @field_validator("domains")
    @classmethod
    def _domain_names(cls, v: dict[str, DomainConfig]) -> dict[str, DomainConfig]:
        for name in v:
            if not name.isidentifier():
                raise ValueError(f"domain name {name!r} must be a simple identifier")
        return v


class ConfigError(ValueError):
    """A configuration file or override that cannot be used; the message says which and why."""


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _parse_override(item: str) -> dict[str, Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form section.key=value")
    dotted, raw = item.split("=", 1)
    value = yaml.safe_load(raw) if raw else None
    tree: dict[str, Any] = {}
    node = tree
    keys = dotted.strip().split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return tree


def load_config(
    path: Path | None = None, overrides: list[str] | None = None, **sections: Any
) -> MotioncastConfig:
    """Defaults, then the YAML at ``path``, then ``overrides`` ('a.b=value'), then ``sections``
    (nested dicts, as the CLI's specific flags give them)."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read configuration: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: configuration must be a mapping at top level")
        data = loaded
    for item in overrides or []:
        data = _deep_merge(data, _parse_override(item))
    data = _deep_merge(data, {k: v for k, v in sections.items() if v is not None})
    try:
        return MotioncastConfig.model_validate(data)
    except ValidationError as exc:
        where = str(path) if path else "configuration"
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}: {loc}: {first['msg']}") from None
