"""AGPIS: automatic generation of product-image sequences (Fan et al., KDD'22).

`agpis.Pipeline.load("default").generate(title, images)` runs both stages in-process.
Heavy modules load lazily so that `import agpis.rules` stays cheap for tools and stages.
"""
import os

__version__ = "0.1.0"

# numpy's OpenBLAS starts a thread per core for any larger matrix product (stage 1's box
# neighbours, stage 2's novelty) and those threads spin for a while after it: on 2 cores they
# took a core from the next request's backbone and EdgeBoxes (stage 1 + stage 2 back to back:
# stage 1 p50 288 -> 225 ms with one BLAS thread). Our parallelism is explicit (stage 1's two
# threads, concurrent requests, Ray actors). Read when numpy is first imported, which `agpis`
# comes before in the CLI, the service and the batch actors; an operator's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__all__ = ["Pipeline", "Decision", "__version__"]


def __getattr__(name):
    if name in ("Pipeline", "Decision"):
        from agpis import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'agpis' has no attribute {name!r}")
