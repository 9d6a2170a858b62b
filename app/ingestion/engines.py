"""Where an ingest's heavy work runs (``--engine``): this process, or a Ray cluster."""
from __future__ import annotations


class EngineError(ValueError):
    pass


ENGINES = ("local", "ray")


def distributor(name: str = "local", address: str | None = None, workers: int | None = None):
    """Where an ingest's heavy work runs: ``local`` (this process: None) or ``ray`` (a Ray
    cluster: the one at ``address``, else RAY_ADDRESS, else one started for this process, with
    ``workers`` actors; see ``app.ingestion.distributed``)."""
    if name not in ENGINES:
        raise EngineError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
    if name == "local":
        if address or workers:
            raise EngineError("--address and --workers are options of the ray engine (--engine ray)")
        return None
    try:
        from app.ingestion.distributed import RayDistributor
    except ImportError:
        raise EngineError("the ray engine needs Ray: pip install 'imgsim[ray]'") from None
    return RayDistributor(address, workers)
