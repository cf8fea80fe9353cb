"""The README's generated table and the deployment files stay true to the code."""
from __future__ import annotations

import importlib.util
import re
import tomllib

import yaml

from agpis import config
from tests.conftest import ROOT


def test_readme_config_table_is_current():
    spec = importlib.util.spec_from_file_location("update_readme", ROOT / "scripts" / "update_readme.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    readme = (ROOT / "README.md").read_text()
    assert mod.render(readme) == readme, "README's configuration table is stale: run `make docs`"


def test_readme_has_exactly_the_two_setup_commands_and_ci_runs_the_second():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^(make \w+)", quick, re.M)
    assert commands == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def _docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_kubernetes_manifests():
    k8s = ROOT / "deploy" / "k8s"
    kinds = {}
    for path in sorted(k8s.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            listed = set(yaml.safe_load(path.read_text())["resources"])
            continue
        for doc in _docs(path):
            kinds.setdefault(doc["kind"], []).append(doc)
    assert listed == {p.name for p in k8s.glob("*.yaml")} - {"kustomization.yaml"}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap", "StatefulSet", "CronJob",
            "PersistentVolumeClaim", "NetworkPolicy"} <= set(kinds)
    policy = kinds["NetworkPolicy"][0]["spec"]
    assert policy["podSelector"]["matchLabels"] == {"app": "agpis"}
    assert {p["port"] for rule in policy["ingress"] for p in rule["ports"]} == {50051, 9100}
    deployment = next(d for d in kinds["Deployment"] if d["metadata"]["name"] == "agpis")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["grpc"]["port"] == 50051, probe
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > config.ServerConfig().grace_s
    # The ConfigMap's TOML is a valid configuration for this code.
    toml_text = kinds["ConfigMap"][0]["data"]["agpis.toml"]
    path = ROOT / "var" / "test-configmap.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(toml_text)
    cfg = config.load(path, env={})
    assert tomllib.loads(toml_text)["server"]["port"] == cfg.server.port == 50051
    # It listens on 0.0.0.0, so it must name a tokens file, and the Deployment must mount it.
    assert cfg.server.host == "0.0.0.0" and cfg.server.api_tokens_file.startswith("/etc/agpis-tokens/")
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/etc/agpis-tokens" in mounts


def test_compose_file():
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    assert {"agpis", "redis"} <= set(compose["services"])
    assert compose["services"]["agpis"]["environment"]["REDIS_URL"].startswith("redis://redis:")
    assert compose["services"]["agpis"]["environment"]["AGPIS_SERVER__API_TOKENS_FILE"].startswith("/run/secrets/")
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert 'torch==2.13.0" .' in dockerfile and "--no-deps" in dockerfile
    # the image has no .git: its commit reaches model_versions["code"] through the build argument
    assert "AGPIS_COMMIT" in compose["services"]["agpis"]["build"]["args"]
    assert "ENV AGPIS_CODE_COMMIT=$AGPIS_COMMIT" in dockerfile


def test_kuberay_rayjob_runs_agpis_batch_as_the_cli_and_config_accept_it():
    import shlex

    import ray

    from agpis.cli import build_parser

    docs = {d["kind"]: d for d in _docs(ROOT / "deploy" / "k8s" / "ray" / "rayjob-batch.yaml")}
    job, pvc = docs["RayJob"], docs["PersistentVolumeClaim"]
    assert job["apiVersion"] == "ray.io/v1"
    spec, cluster = job["spec"], job["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__
    assert cluster["authOptions"]["mode"] == "token"  # Ray 2.60's token authentication stays on

    # The entrypoint is a valid `agpis batch` command line.
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["agpis", "batch"]
    args = build_parser().parse_args(argv[1:])
    assert args.func.__name__ == "cmd_batch"

    head = cluster["headGroupSpec"]["template"]["spec"]
    container = head["containers"][0]
    deployment = _docs(ROOT / "deploy" / "k8s" / "deployment.yaml")[0]
    assert container["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in head["volumes"]}
    # --out lies on the job's persistent volume (a re-run resumes from it); --config on the ConfigMap.
    assert str(args.out).startswith(mounts["out"] + "/")
    assert volumes["out"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert args.config.startswith(mounts["config"] + "/")
    assert volumes["config"]["configMap"]["name"] == "agpis-config"
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # actors on the workers only

    # The head's environment is a valid configuration, and the actors fit the workers with room for reads.
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    cfg = config.load(env=env)
    assert cfg.queue.redis_url == env["REDIS_URL"]
    workers = cluster["workerGroupSpecs"][0]
    per_worker = cfg.batch.actors / workers["replicas"]
    worker_cpus = float(workers["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"])
    assert per_worker * cfg.batch.actor_cpus + cfg.batch.read_cpus <= worker_cpus
