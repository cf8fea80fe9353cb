"""AGPIS: automatic generation of product-image sequences (Fan et al., KDD'22).

`agpis.Pipeline.load("default").generate(title, images)` runs both stages in-process.
Heavy modules load lazily so that `import agpis.rules` stays cheap for tools and stages.
"""
__version__ = "0.1.0"

__all__ = ["Pipeline", "Decision", "__version__"]


def __getattr__(name):
    if name in ("Pipeline", "Decision"):
        from agpis import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'agpis' has no attribute {name!r}")
