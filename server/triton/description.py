"""Reading a served model's description from Triton, and telling why the server has none to give.

The server answers NOT_FOUND alike for a model it has in its repository but does not serve (still
loading, unloaded, failed to load) and for a name it does not have; only its repository index tells
them apart, so a node that has never read the model's description asks it (`ModelNotLoaded`, or a
`ModelError` naming the models the server has), and one that has, to name them when its model is gone
from the repository. `server.triton.model` decides what each means for
availability: a model not loaded is an outage to wait out, at start too; a wrong name a `ModelError`
at start. Kept apart from running requests, which need none of this.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from server.inference.models import ModelError
from server.triton.served_model import ServedModel
from server.triton.transport import (
    RepositoryModel,
    Transport,
    TritonEndpoint,
    TritonFailed,
    TritonModelMissing,
    TritonRefused,
    TritonTimeout,
    TritonUnavailable,
)

_T = TypeVar("_T")

#: What Triton answers a request it will not start as it shuts down (gRPC UNAVAILABLE, HTTP 503):
#: "Server is stopping, scheduler for model has stopped accepting new inference requests".
_STOPPING = "Server is stopping"
#: Triton's words, asked whether it is live while it exits (gRPC), and its answer to requests then.
_EXITING = "Server exiting"
_EXITING_SIGNS = (_EXITING, _STOPPING)
#: What Triton puts before a request's errors, "[request id: <id_unknown>] ": noise to a person.
_REQUEST_ID = re.compile(r"^\[request id: [^\]]*\]\s*")


class Exchange(Protocol):
    """One exchange with the server, counted as the model counts each (`TritonModel._counted`)."""

    def __call__(self, call: Callable[..., _T], *args: Any) -> _T: ...


class ServerStopping(TritonUnavailable):
    """The server is shutting down: it says it is not live, or no longer answers whether it is."""


class ModelNotLoaded(TritonModelMissing):
    """Triton has the model in its repository but does not serve it yet (loading, unloaded, failed to
    load): an outage to wait out, at start too. Its text is the state the repository index gives."""


def read_description(
    transport: Transport,
    endpoint: TritonEndpoint,
    spec: str,
    known: ServedModel | None,
    exchange: Exchange,
    timeout_s: float,
) -> ServedModel:
    """The served model, read from the server; `ModelError` if segcast cannot use it, or if its class
    names are not those of ``known`` (the description the node has used since it first read one), saying
    how they changed. Until one was read (``known`` None), a model the server does not serve is explained
    by `_not_served`; after, by `_gone`. The config and the version to pin requests to are read as one
    exchange (`_config_and_version`)."""
    try:
        config, version = exchange(_config_and_version, transport, endpoint.model, timeout_s)
    except TritonRefused as exc:
        raise cannot_serve(spec, endpoint, exc) from None
    except TritonModelMissing as exc:
        if known is not None:  # it served the model before: gone for now, as the outage says
            raise _gone(transport, endpoint, exchange, timeout_s, exc) from None
        raise _not_served(transport, endpoint, spec, exchange, timeout_s, exc) from None
    served = ServedModel.from_config(config, spec, version)
    if known is not None and served.names != known.names:
        # Trackers, class filters, zones and lines of running streams hold the old names' ids.
        raise ModelError(
            f"the model on Triton at {endpoint.address} now has other classes than at start: restart segcast to use "
            f"it ({classes_changed(known.names, served.names)})"
        )
    return served


def _config_and_version(transport: Transport, model: str, timeout_s: float) -> tuple[dict[str, Any], str]:
    """The model's config, then the version to pin its requests to (`pinned_version`), from the
    repository index read within what is left of ``timeout_s``. An index the server restricts, or does
    not answer in time, pins nothing (""): requests go unpinned, as before versions were pinned, and
    the description itself stands."""
    started = time.monotonic()
    config = transport.model_config(model, timeout_s)
    left_s = timeout_s - (time.monotonic() - started)
    if left_s <= 0:
        return config, ""
    try:
        index = transport.repository_index(left_s)
    except (TritonUnavailable, TritonRefused):
        return config, ""
    return config, pinned_version(index, model)


def pinned_version(index: list[RepositoryModel], model: str) -> str:
    """The highest version of ``model`` the index says is READY, "" if none. A request that names no
    version, as the config read just before was, is answered by that one, whatever the version policy:
    so it is the version whose description the node read. Pinned, a newer version loaded later under the
    same name (model control ``poll`` or ``explicit``) never answers requests labelled with this
    description's classes: the node reads the new version at its next description and uses it only if
    its classes are the same. (A version made ready between the config's read and the index's is
    pinned with the config before it, and compared at the next description.)"""
    ready = [entry.version for entry in index if entry.name == model and entry.state == "READY"]
    return max((version for version in ready if version.isdigit()), key=int, default="")


def classes_changed(old: dict[int, str], new: dict[int, str]) -> str:
    """What an operator needs to know of a model's new classes, e.g. "class 0 disc -> circle; a stream
    filtering on disc processes no frames after the restart": which ids changed name, were added or
    removed, and which names are gone, as a restart refuses the streams that filter on those (the
    model does not know the node's streams, so it names the classes, not the streams)."""
    said = [
        f"class {class_id} {old[class_id]} -> {new[class_id]}"
        for class_id in sorted(old.keys() & new.keys())
        if old[class_id] != new[class_id]
    ]
    said += [f"added class {class_id} {new[class_id]}" for class_id in sorted(new.keys() - old.keys())]
    said += [f"removed class {class_id} {old[class_id]}" for class_id in sorted(old.keys() - new.keys())]
    lost = [name for _, name in sorted(old.items()) if name not in new.values()]
    if lost:
        said.append(f"a stream filtering on {', '.join(lost)} processes no frames after the restart")
    return "; ".join(said)


def cannot_serve(spec: str, endpoint: TritonEndpoint, exc: Exception) -> ModelError:
    return ModelError(f"--model {spec}: Triton at {endpoint.address} cannot serve it ({_said(exc)})")


def outage(endpoint: TritonEndpoint, exc: TritonUnavailable) -> str:
    """What the status says of ``exc``: the server is shutting down (it is reached: not unreachable),
    failed the request, has not loaded the model, does not serve it now, took the request and did not
    answer in time (hung, or overloaded: it is reached), or cannot be reached (refused: asked whether
    Triton runs there, over either protocol alike)."""
    where, said = f"Triton at {endpoint.address}", _said(exc)
    if isinstance(exc, TritonTimeout):
        return f"{where} is {said}"
    if isinstance(exc, ServerStopping) or _STOPPING in said:
        return f"{where} is shutting down"
    if isinstance(exc, TritonFailed):
        return f"{where} failed the request: {said}"
    if isinstance(exc, ModelNotLoaded):
        return f"{where} has {endpoint.model} but has not loaded it ({said})"
    if isinstance(exc, TritonModelMissing):
        return f"{where} does not serve {endpoint.model} now: {said}"
    if "connection refused" in said.lower():  # gRPC's words, or HTTP's "[Errno 111] Connection refused"
        return f"{where} unreachable: connection refused: is Triton running at {endpoint.address}?"
    return f"{where} unreachable: {said}"


def unless_stopping(
    transport: Transport, exchange: Exchange, timeout_s: float, missing: TritonModelMissing
) -> TritonUnavailable:
    """``missing``, or `ServerStopping` if the server is shutting down. Triton unloads its models as it
    stops, before it answers "Server is stopping", and answers for them meanwhile as for a model
    unloaded on a running server; asked whether it is live, it says "Server exiting" then (gRPC), or its
    port refuses the connection (HTTP's closes first). Only those say so: a liveness it will not or
    cannot give (a restricted health API, which tritonclient's HTTP client reads as not live; a slow
    answer) tells nothing, and a model name it lacks stays a wrong name."""
    try:
        exchange(transport.server_live, timeout_s)
    except (TritonRefused, TritonTimeout, TritonFailed):
        return missing
    except TritonUnavailable as exc:
        said = str(exc)
        if any(sign in said for sign in _EXITING_SIGNS) or "connection refused" in said.lower():
            return ServerStopping(_EXITING)
    return missing


def _said(exc: Exception) -> str:
    """Triton's text of ``exc``, as a person reads it: without the request id it puts before it."""
    return _REQUEST_ID.sub("", str(exc))


def _not_served(
    transport: Transport,
    endpoint: TritonEndpoint,
    spec: str,
    exchange: Exchange,
    timeout_s: float,
    missing: TritonModelMissing,
) -> Exception:
    """Why a model never described yet is NOT_FOUND, from the server's repository index:
    `ModelNotLoaded` naming its state if the repository has it, a `ModelError` naming the models it
    has if not, and ``missing`` itself if the index cannot be read (restricted, or the server
    went away meanwhile). Unless the server is shutting down (`unless_stopping`), having unloaded
    its models: a node started then (a whole box restarted at once) waits for it, as for a server
    not started yet, where it would have refused the model as a wrong name."""
    try:
        index = exchange(transport.repository_index, timeout_s)
    except (TritonUnavailable, TritonRefused):
        return unless_stopping(transport, exchange, timeout_s, missing)
    versions = [entry for entry in index if entry.name == endpoint.model]
    if versions:
        return ModelNotLoaded(_states(versions))
    if isinstance(stopping := unless_stopping(transport, exchange, timeout_s, missing), ServerStopping):
        return stopping
    names = sorted({entry.name for entry in index})
    return ModelError(
        f"--model {spec}: Triton at {endpoint.address} has no model '{endpoint.model}' "
        f"(it has: {', '.join(names) or 'none'})"
    )


def _gone(
    transport: Transport, endpoint: TritonEndpoint, exchange: Exchange, timeout_s: float, missing: TritonModelMissing
) -> TritonModelMissing:
    """``missing``, for a model the node served before, saying which models the server has when its
    repository index no longer lists the model (renamed, or removed): the likely fix is in ``--model``.
    Still an outage, not a `ModelError`: the model may come back under its name. ``missing`` itself
    when the index lists it (unloaded, reloading) or cannot be read."""
    try:
        index = exchange(transport.repository_index, timeout_s)
    except (TritonUnavailable, TritonRefused):
        return missing
    if any(entry.name == endpoint.model for entry in index):
        return missing
    names = sorted({entry.name for entry in index})
    return TritonModelMissing(f"{_said(missing)} (it has: {', '.join(names) or 'none'})")


def _states(versions: list[RepositoryModel]) -> str:
    """The repository index's word on a model's versions, e.g. "state LOADING" or "version 1 state
    UNAVAILABLE: unloaded"; with Triton's reason, which for a model that failed to load says why."""
    said = []
    for entry in versions:
        version = f"version {entry.version} " if entry.version and len(versions) > 1 else ""
        state = f"state {entry.state}" if entry.state else "never loaded"
        said.append(f"{version}{state}{': ' + entry.reason if entry.reason else ''}")
    return "; ".join(said)
