"""`python -m tests.service.slow_server SECTION.FIELD=VALUE...`: the real server and signal
handling, with a stage 1 slowed down so that a test can have calls in flight at SIGTERM.
It prints its port, "reloaded" after each SIGHUP's token reload, and "entered" each time a call
enters stage 1: a test waits for these instead of guessing with sleeps."""
import os
import sys

from agpis.config import load
from agpis.service import AgpisServer
from tests.service.helpers import slow_pipeline

if __name__ == "__main__":
    cfg = load(overrides=sys.argv[1:])
    pipeline = slow_pipeline(cfg, delay=1.5)
    server = AgpisServer(cfg, pipeline=pipeline).start().wait_ready(timeout=300)
    # after warm-up's own calls; one os.write per line, since print() from three threads interleaves
    pipeline.stage1.on_enter = lambda: os.write(sys.stdout.fileno(), b"entered\n")
    reload = server.reload_tokens

    def reload_and_say():
        reload()
        os.write(sys.stdout.fileno(), b"reloaded\n")

    server.reload_tokens = reload_and_say  # the SIGHUP handler looks it up when signalled
    # Handlers before the port: the test signals as soon as it reads it (a SIGHUP before them
    # ended the process, a failure seen under a full test run's load).
    stop = server.handle_signals()
    print(server.port, flush=True)
    server.serve_forever(stop)
