from pathlib import Path

import pytest

from pipelines.config import DEFAULT_CONFIG_FILE, ConfigError, MotioncastConfig, load_config


def test_default_yaml_documents_the_builtin_defaults():
    assert load_config(DEFAULT_CONFIG_FILE) == MotioncastConfig()


def test_yaml_then_overrides_then_flags(tmp_path: Path):
    user = tmp_path / "c.yaml"
    user.write_text("ingest:\n  batch_size: 8\n  workers: 3\nzr: {a: 300}\n")
    cfg = load_config(
        user, ["ingest.workers=4", "stores.archive.location=/x/y"], ingest={"workers": 5}
    )
    assert cfg.ingest.batch_size == 8
    assert cfg.ingest.workers == 5
    assert cfg.zr.a == 300 and cfg.zr.b == 1.6
    assert str(cfg.stores.archive.location) == "/x/y"


def test_the_old_store_keys_are_read_into_stores_with_a_warning_each(tmp_path: Path, caplog):
    """Configurations written before the stores: section keep working: each old key is read
    as its new one, and says so once; a key given both ways keeps the new one."""
    old = tmp_path / "old.yaml"
    old.write_text(
        "store: {archive: /a, chunk_yx: 512, object_storage: {region: eu}}\n"
        "forecast: {store: /f, audit_days: 2.0, method: sprog}\n"
        "verify: {store: /s, audit_days: 9.0}\n"
    )
    with caplog.at_level("WARNING", logger="pipelines.config"):
        cfg = load_config(old, ["stores.forecasts.location=/new"])
    s = cfg.stores
    assert (s.archive.location, s.archive.chunk_yx, s.object_storage.region) == ("/a", 512, "eu")
    assert (s.forecasts.location, s.forecasts.audit_days) == ("/new", 2.0)  # the new key wins
    assert (s.scores.location, s.scores.audit_days) == ("/s", 9.0)
    assert cfg.forecast.method == "sprog"  # the rest of the old sections stays
    moved = [r.getMessage() for r in caplog.records]
    assert len(moved) == 7 and "store.archive is now stores.archive.location" in moved[0]


def test_configured_domain_gives_a_grid():
    cfg = load_config(
        overrides=["domains.bx={crs: 'EPSG:3035', extent: [0, 0, 10000, 6000], resolution: 1000}"]
    )
    grid = cfg.domains["bx"].grid()
    assert grid.shape == (6, 10)
    assert grid.x[0] == 500 and grid.y[0] == 5500


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("ingest: {batch_size: 0}", "ingest.batch_size"),
        ("ingest: {bogus: 1}", "ingest.bogus"),
        ("- a list", "mapping"),
        ("zr: {a: [", "cannot read"),
    ],
)
def test_bad_configuration_names_file_and_key(tmp_path: Path, text: str, fragment: str):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert str(bad) in str(err.value) and fragment in str(err.value)


def test_the_api_token_comes_from_the_environment_or_a_file_never_from_configuration(
    tmp_path, monkeypatch
):
    """Reproduced defect: --set serve.token=... showed in ps and in Prefect's deployment
    parameters. The token is refused as configuration, read from MOTIONCAST_API_TOKEN or
    serve.token_file, and a configuration dump (what deployments store) holds none."""
    import pytest

    from pipelines.config import ConfigError, load_config

    monkeypatch.delenv("MOTIONCAST_API_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="set MOTIONCAST_API_TOKEN or serve.token_file"):
        load_config(None, ["serve.token=s3cret"])
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    cfg = load_config(None, [f"serve.token_file={secret}"])
    assert cfg.serve.bearer_token() == "s3cret"
    assert "s3cret" not in str(cfg.model_dump(mode="json"))
    monkeypatch.setenv("MOTIONCAST_API_TOKEN", "from-env")
    assert cfg.serve.bearer_token() == "from-env"
    monkeypatch.delenv("MOTIONCAST_API_TOKEN")
    with pytest.raises(ConfigError, match="token_file .* No such file"):
        load_config(None, [f"serve.token_file={tmp_path / 'none'}"]).serve.bearer_token()
    assert load_config(None, []).serve.bearer_token() is None
