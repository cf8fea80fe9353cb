import pytest

from agpis import config


def test_precedence_defaults_file_env_flags(tmp_path):
    f = tmp_path / "agpis.toml"
    f.write_text('[server]\nport = 6000\nmax_concurrent_rpcs = 3\n[pipeline]\nthreshold = 0.4\n[images]\nallowed_hosts = ["a.example"]\n')
    env = {"AGPIS_SERVER__PORT": "7000", "REDIS_URL": "redis://r:6379/0"}
    cfg = config.load(f, env=env, overrides=["server.port=8000"])
    assert cfg.server.port == 8000  # flag beats env beats file
    assert cfg.server.max_concurrent_rpcs == 3  # file beats default
    assert cfg.pipeline.threshold == 0.4
    assert cfg.queue.redis_url == "redis://r:6379/0"
    assert cfg.images.allowed_hosts == ["a.example"]
    assert config.load(f, env={"AGPIS_SERVER__PORT": "7000"}).server.port == 7000
    assert config.load(env={}).server.port == config.ServerConfig().port


def test_env_file_variable_and_list_coercion(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[log]\njson = false\n")
    cfg = config.load(env={"AGPIS_CONFIG": str(f), "AGPIS_IMAGES__FILE_ROOTS": "/a, /b"})
    assert cfg.log.json is False
    assert cfg.images.file_roots == ["/a", "/b"]


@pytest.mark.parametrize("override,message", [
    ("server.nope=1", "unknown setting 'server.nope'"),
    ("nosection.port=1", "unknown section 'nosection'"),
    ("server.port=abc", "expected int"),
    ("log.json=maybe", "expected bool"),
    ("server.port", "section.field=value"),
])
def test_bad_settings_fail_clearly(override, message):
    with pytest.raises(config.ConfigError, match=message):
        config.load(env={}, overrides=[override])


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(config.ConfigError, match="not found"):
        config.load(tmp_path / "missing.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(bad, env={})


def test_describe_lists_every_setting():
    rows = config.describe()
    names = {r[0] for r in rows}
    assert {"server.port", "queue.redis_url", "pipeline.threshold", "stage1.primary_threshold"} <= names
