"""infra/: the manifests parse and point at things that exist; the GPU config is valid."""

import shlex
from pathlib import Path

import yaml
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.config import load_config

INFRA = Path(__file__).resolve().parents[1] / "infra"


def test_gpu_training_config_is_valid():
    cfg = load_config(INFRA / "train-gpu.yaml")
    assert cfg.training.scaling.use_gpu and cfg.training.scaling.workers == 8
    assert cfg.training.model.frames_out == cfg.training.data.frames_out


def test_rayjob_runs_the_train_verb_with_the_repo_config():
    job = yaml.safe_load((INFRA / "kuberay" / "rayjob-train.yaml").read_text())
    assert job["kind"] == "RayJob" and job["apiVersion"] == "ray.io/v1"
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["motioncast", "train"]
    config = argv[argv.index("--config") + 1]
    assert (INFRA.parent / config.removeprefix("/opt/motioncast/")).exists()
    gpus = sum(
        int(g["replicas"])
        * int(g["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
        for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    )
    assert gpus == load_config(INFRA / "train-gpu.yaml").training.scaling.workers
    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0 and "--registry" in result.output


def test_cluster_launcher_config_parses():
    cluster = yaml.safe_load((INFRA / "ray-cluster.yaml").read_text())
    assert cluster["provider"]["type"] == "local" and cluster["head_start_ray_commands"]


def test_train_verb_fails_in_one_line_on_bad_input(tmp_path: Path, truth_archive: Path):
    runner = CliRunner()
    missing = runner.invoke(app, ["train", "--store", str(tmp_path / "none"), "-r", str(tmp_path)])
    assert missing.exit_code == 1 and "no archive store here" in missing.output
    assert "Traceback" not in missing.output
    clash = runner.invoke(
        app,
        ["train", "--store", str(truth_archive), "-r", str(tmp_path)]
        + ["--set", "training.data.frames_out=5", "--set", "training.model.frames_out=6"],
    )
    assert clash.exit_code == 2 and "differ from data frames" in clash.output
    few = runner.invoke(
        app,
        [
            "train",
            "--store",
            str(truth_archive),
            "-r",
            str(tmp_path),
            "--set",
            "training.data.block_hours=24",
        ],
    )
    assert few.exit_code == 1 and "not enough complete windows" in few.output


def test_serving_manifests_point_at_the_app_and_a_valid_config():
    from pipelines.config import MotioncastConfig

    service = load_config(INFRA / "service.yaml")
    assert service.stores.forecasts.location.startswith("/mnt/motioncast")
    serve_file = yaml.safe_load((INFRA / "serve.yaml").read_text())
    (application,) = serve_file["applications"]
    assert application["import_path"] == "pipelines.serve.app:app_builder"
    assert (INFRA.parent / application["args"]["config"]).exists()
    assert serve_file["http_options"]["host"] == "127.0.0.1"  # loopback unless asked otherwise
    rayservice = yaml.safe_load((INFRA / "kuberay" / "rayservice.yaml").read_text())
    assert rayservice["kind"] == "RayService"
    config = yaml.safe_load(rayservice["spec"]["serveConfigV2"])["applications"][0]["args"]
    assert (INFRA.parent / config["config"].removeprefix("/opt/motioncast/")).exists()
    prefect = yaml.safe_load((INFRA / "prefect.yaml").read_text())
    cycle = next(d for d in prefect["deployments"] if d["name"] == "forecast-cycle")
    assert cycle["schedules"][0]["cron"] == MotioncastConfig().forecast.cron
    assert cycle["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    verification = next(d for d in prefect["deployments"] if d["name"] == "verification")
    assert verification["schedules"][0]["cron"] == MotioncastConfig().verify.cron
    for deployment in prefect["deployments"]:
        path, name = deployment["entrypoint"].split(":")
        assert name in (INFRA.parent / path).read_text()


def test_the_app_builder_builds_the_application_from_a_config_file():
    from pipelines.serve.app import app_builder

    application = app_builder({"config": str(INFRA / "service.yaml"), "overrides": []})
    assert type(application).__name__ == "Application"


def test_the_cluster_cycle_reaches_its_service_with_the_token_from_a_secret():
    """Reproduced defect: serve.host 0.0.0.0 became the cycle's URL http://127.0.0.1:8000, and
    no manifest gave the Prefect worker the token."""
    service = load_config(INFRA / "service.yaml")
    assert service.serve.host == "0.0.0.0"
    rayservice = yaml.safe_load((INFRA / "kuberay" / "rayservice.yaml").read_text())
    svc = f"http://{rayservice['metadata']['name']}-serve-svc:{service.serve.port}"
    assert service.serve.client_url() == svc  # KubeRay's Service of the RayService
    worker = yaml.safe_load((INFRA / "prefect-worker.yaml").read_text())
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    secret = {"secretKeyRef": {"name": "motioncast-api", "key": "token"}}
    assert env["MOTIONCAST_API_TOKEN"]["valueFrom"] == secret
    head = rayservice["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    head_env = {e["name"]: e for e in head["containers"][0]["env"]}
    assert head_env["MOTIONCAST_API_TOKEN"]["valueFrom"] == secret
    assert "token" not in (INFRA / "prefect.yaml").read_text().replace("# ", "")
