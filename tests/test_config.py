"""One loader for file, environment and CLI overrides, accepting the reference's layout."""

from __future__ import annotations

import pytest

from daemon import main
from config import ConfigError, load_config


def test_defaults_are_the_embedded_dev_profile() -> None:
    config = load_config(environ={})
    assert config.profile == "dev" and config.server.redis is None
    assert config.sql_dsn().endswith("data/worldservice.sqlite3")
    assert (config.server.bind.host, config.server.bind.port) == ("127.0.0.1", 8080)
    assert config.auto_migrate()


def test_reference_file_with_inline_server_keys(tmp_path) -> None:
    path = tmp_path / "qmtl.yml"
    path.write_text("profile: prod\nworldservice:\n  dsn: postgresql://db/ws\n  server:\n"
                    "    redis: redis://cache:6379/0\n    bind: {host: 0.0.0.0, port: 9000}\n")
    config = load_config(path, environ={})
    assert (config.profile, config.server.dsn, config.server.redis) == ("prod", "postgresql://db/ws",
                                                                          "redis://cache:6379/0")
    assert config.server.bind.port == 9000 and not config.auto_migrate()


def test_environment_overrides_the_file(tmp_path) -> None:
    path = tmp_path / "ws.toml"
    path.write_text('[worldservice.actors]\nidle_timeout_s = 10\n')
    env = {"WORLDSERVICE__ACTORS__IDLE_TIMEOUT_S": "2.5", "WORLDSERVICE__SERVER__BIND__PORT": "7000",
           "WORLDSERVICE__DSN": "sqlite:///x.db", "WORLDSERVICE__PROFILE": "dev", "OTHER": "x"}
    config = load_config(path, environ=env)
    assert config.worldservice.actors.idle_timeout_s == 2.5
    assert config.server.bind.port == 7000 and config.server.dsn == "sqlite:///x.db"


def test_bad_values_name_the_setting(tmp_path) -> None:
    with pytest.raises(ConfigError, match="idle_timeout_s"):
        load_config(environ={"WORLDSERVICE__ACTORS__IDLE_TIMEOUT_S": "soon"})
    with pytest.raises(ConfigError, match="profile"):
        load_config(environ={"WORLDSERVICE__PROFILE": "staging"})
    with pytest.raises(ConfigError, match="nonsense"):
        load_config(environ={"WORLDSERVICE__NONSENSE": "1"})


def test_check_config_refuses_prod_without_redis(capsys) -> None:
    assert main(["check-config", "--profile", "prod"]) == 2
    assert "worldservice.server.redis" in capsys.readouterr().err
    assert main(["check-config"]) == 0


def test_the_risk_hub_settings_are_checked() -> None:
    hub = load_config(environ={"WORLDSERVICE__RISK_HUB__TTL_SEC_DEFAULT": "600"}).worldservice.risk_hub
    assert (hub.ttl_sec_default, hub.ttl_sec_max, hub.max_attempts) == (600, 86_400, 3)
    with pytest.raises(ConfigError, match="ttl_sec_default"):
        load_config(environ={"WORLDSERVICE__RISK_HUB__TTL_SEC_DEFAULT": "90000"})
    with pytest.raises(ConfigError, match="blob_store"):
        load_config(environ={"WORLDSERVICE__RISK_HUB__BLOB_STORE": "s3"})
    assert (hub.allowed_actors, hub.allowed_stages, hub.realized_returns_max_points_total) == (None, None, 1_000_000)
    gated = load_config(environ={}, overrides={"worldservice": {"risk_hub": {
        "allowed_actors": ["gateway"], "allowed_stages": ["paper", "live"]}}}).worldservice.risk_hub
    assert (gated.allowed_actors, gated.allowed_stages) == (["gateway"], ["paper", "live"])
    with pytest.raises(ConfigError, match="realized_returns_max_points_per_series"):
        load_config(environ={}, overrides={"worldservice": {"risk_hub": {"realized_returns_max_points_per_series": 0}}})
    with pytest.raises(ConfigError, match="allowed_actors"):
        load_config(environ={}, overrides={"worldservice": {"risk_hub": {"allowed_actors": "gateway"}}})


def test_cluster_mode_is_off_by_default_and_on_when_its_section_is_set(tmp_path) -> None:
    assert load_config(environ={}).cluster is None and load_config(environ={}).cluster_problems() == []
    path = tmp_path / "ws.yml"
    path.write_text("worldservice:\n  dsn: postgresql://db/ws\n  controlbus_brokers: [k1:9092]\n"
                    "  cluster: {partitions: 24, forward: redirect}\n")
    env = {"WORLDSERVICE__CLUSTER__ADVERTISE_URL": "http://10.0.0.7:8081"}
    cluster = load_config(path, environ=env).cluster
    assert cluster is not None
    assert (cluster.advertise_url, cluster.partitions, cluster.forward) == ("http://10.0.0.7:8081", 24, "redirect")
    assert load_config(path, environ=env).cluster_problems() == []
    # The advertise URL alone (the one setting that differs per instance) turns it on as well.
    alone = load_config(environ=env).cluster
    assert alone is not None and (alone.partitions, alone.forward) == (12, "forward")
    with pytest.raises(ConfigError, match="forward"):
        load_config(path, environ={**env, "WORLDSERVICE__CLUSTER__FORWARD": "proxy"})
    with pytest.raises(ConfigError, match="partitions"):
        load_config(path, environ={**env, "WORLDSERVICE__CLUSTER__PARTITIONS": "0"})


def test_cluster_mode_without_postgres_and_kafka_is_refused_one_line_each(capsys, monkeypatch) -> None:
    config = load_config(environ={"WORLDSERVICE__CLUSTER__ADVERTISE_URL": "http://127.0.0.1:8081"})
    assert [p.split(":", 1)[0] for p in config.cluster_problems()] == [
        "worldservice.server.dsn", "worldservice.server.controlbus_brokers"]
    monkeypatch.setenv("WORLDSERVICE__CLUSTER__PARTITIONS", "4")
    assert main(["check-config"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[1].strip() for line in err] == [
        "worldservice.cluster.advertise_url", "worldservice.server.dsn", "worldservice.server.controlbus_brokers"]
