"""`python -m tests.service.slow_server SECTION.FIELD=VALUE...`: the real server and signal
handling, with a stage 1 slowed down so that a test can have calls in flight at SIGTERM."""
import sys

from agpis.config import load
from agpis.service import AgpisServer
from tests.service.helpers import slow_pipeline

if __name__ == "__main__":
    cfg = load(overrides=sys.argv[1:])
    server = AgpisServer(cfg, pipeline=slow_pipeline(cfg, delay=1.5)).start().wait_ready(timeout=300)
    print(server.port, flush=True)
    server.serve_forever()
