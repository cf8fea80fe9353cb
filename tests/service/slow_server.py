"""`python -m tests.service.slow_server SECTION.FIELD=VALUE...`: the real server and signal
handling, with a stage 1 slowed down so that a test can have calls in flight at SIGTERM.
It prints its port, then "entered" each time a call enters stage 1."""
import os
import sys

from agpis.config import load
from agpis.service import AgpisServer
from tests.service.helpers import slow_pipeline

if __name__ == "__main__":
    cfg = load(overrides=sys.argv[1:])
    pipeline = slow_pipeline(cfg, delay=1.5)
    server = AgpisServer(cfg, pipeline=pipeline).start().wait_ready(timeout=300)
    print(server.port, flush=True)
    # after warm-up's own calls; one os.write per line, since print() from three threads interleaves
    pipeline.stage1.on_enter = lambda: os.write(sys.stdout.fileno(), b"entered\n")
    server.serve_forever()
