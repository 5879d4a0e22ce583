"""docs/openapi.yaml is what an integrator generates a client from: it must be valid OpenAPI 3.1, and
every answer the server gives (its status, segcast's own headers, its JSON body and every field in
it) must be one the description lists.

The answers are checked against the description's schemas made strict: an object the description
lists the fields of may hold no other, so a field the server adds without documenting it fails here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from server.app import create_app
from server.config import Settings, StreamConfig
from server.delivery.encode import MAX_WIDTH_PX, MIN_WIDTH_PX
from server.events.config import EventsSettings, HistorySettings
from server.http.viewers import MAX_FPS, MIN_FPS
from tests.support.polling import eventually

Start = Callable[..., Awaitable[TestClient]]
DOCS = Path(__file__).resolve().parents[1] / "docs"
SPEC_URI = "urn:segcast:openapi"
ADMIN = "admin-token-for-the-openapi-tests"
VIEWER = "viewer-token-for-the-openapi-tests"
#: segcast's own response headers: each one an answer carries must be declared for its status.
OWN_HEADERS = ("ETag", "Location", "Retry-After", "WWW-Authenticate", "X-Segcast-Seq", "X-Segcast-State")
#: What each path parameter is filled with: names nothing there is, so no operation streams or waits.
PATH_VALUES = {"stream": "nope", "event": "999"}
SCENE = "scene:?seed=1&fps=10&width=320&height=192"
ZONE = {"name": "middle", "points": [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]], "units": "fraction"}
LINE = {"name": "across", "points": [[0.5, 0.0], [0.5, 1.0]], "units": "fraction"}


def load_spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((DOCS / "openapi.yaml").read_text())
    return spec


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec()


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every (path, method, operation) the description has."""
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "patch", "delete", "put"):
                yield path, method, operation


def strict(node: Any) -> Any:
    """``node`` with every object schema that lists its properties closed to any other."""
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    closed = {key: strict(value) for key, value in node.items()}
    if closed.get("type") == "object" and "properties" in closed and "additionalProperties" not in closed:
        closed["additionalProperties"] = False
    return closed


def validator(spec: dict[str, Any], pointer: str) -> Draft202012Validator:
    """A validator for the schema at ``pointer`` (a JSON pointer into the description)."""
    registry: Registry[Any] = Registry().with_resource(
        SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012)
    )
    return Draft202012Validator({"$ref": f"{SPEC_URI}#{pointer}"}, registry=registry)


def escaped(path: str) -> str:
    return path.replace("~", "~0").replace("/", "~1")


def check_answer(spec: dict[str, Any], method: str, path: str, response: aiohttp.ClientResponse, body: bytes) -> None:
    """Fail unless the description lists ``response`` for ``method path``: its status, segcast's own
    headers, and its JSON body, valid against the schema made strict."""
    operation = spec["paths"][path][method]
    status = str(response.status)
    what = f"{method.upper()} {path} -> {status}: {body[:200]!r}"
    assert status in operation["responses"], f"undocumented status: {what}"
    described = operation["responses"][status]
    pointer = f"/paths/{escaped(path)}/{method}/responses/{status}"
    if "$ref" in described:
        pointer = described["$ref"].removeprefix("#")
        described = spec["components"]["responses"][pointer.rpartition("/")[2]]
    declared = {name.lower() for name in described.get("headers", {})}
    for header in OWN_HEADERS:
        if header in response.headers:
            assert header.lower() in declared, f"undeclared header {header}: {what}"
    if response.content_type == "application/json":
        assert "application/json" in described.get("content", {}), f"undescribed JSON body: {what}"
        schema = f"{pointer}/content/application~1json/schema"
        errors = [e.message for e in validator(strict(spec), schema).iter_errors(json.loads(body))]
        assert not errors, f"{what}: {errors}"


async def answer(
    client: TestClient, spec: dict[str, Any], method: str, path: str, url: str | None = None, **kwargs: Any
) -> tuple[aiohttp.ClientResponse, bytes]:
    """``method`` on ``url`` (``path`` itself by default), checked against the description of ``path``."""
    response = await client.request(method.upper(), url or path, **kwargs)
    body = await response.read()
    check_answer(spec, method, path, response, body)
    return response, body


# -- the document itself ------------------------------------------------------------------------------


def test_the_description_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    validate(spec)


def nulls_and_descriptions(node: Any, at: str = "#") -> Iterator[str]:
    """Where ``node`` has a key without a value, or a description or summary that is not text."""
    if isinstance(node, dict):
        for key, value in node.items():
            if value is None:
                yield f"{at}/{key}: no value"
            elif key in ("description", "summary") and not isinstance(value, str):
                yield f"{at}/{key}: not text"
            else:
                yield from nulls_and_descriptions(value, f"{at}/{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from nulls_and_descriptions(item, f"{at}/{i}")


def test_no_key_is_left_without_a_value() -> None:
    """A comma inside a flow mapping's unquoted text (``{description: a, b c, content: ...}``) splits the
    text and makes ``b c`` a key of its own without a value; nothing in the description has a null
    value by design (a null type is written ``"null"``)."""
    assert list(nulls_and_descriptions(load_spec())) == []


def test_the_openapi_description_covers_every_api_route(spec: dict[str, Any]) -> None:
    """docs/openapi.yaml is what a schema-driven fuzzer or client reads: it must not miss a route."""
    described = spec["paths"]
    app = create_app(Settings())
    routes: set[tuple[str, str]] = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/api") or path in ("/healthz", "/metrics"):
            routes.add((path, route.method.lower()))
    missing = {(p, m) for p, m in routes if m != "head" and m not in described.get(p, {})}
    assert not missing, missing


def test_the_picture_parameters_have_the_servers_bounds(spec: dict[str, Any]) -> None:
    max_width = spec["components"]["parameters"]["max_width"]["schema"]
    assert (max_width["minimum"], max_width["maximum"]) == (MIN_WIDTH_PX, MAX_WIDTH_PX)
    [max_fps] = [p for p in spec["paths"]["/api/streams/{stream}/mjpeg"]["parameters"] if p.get("name") == "max_fps"]
    assert (max_fps["schema"].get("minimum"), max_fps["schema"]["maximum"]) == (MIN_FPS, MAX_FPS)
    assert "exclusiveMinimum" not in max_fps["schema"]


# -- every operation, with and without a token --------------------------------------------------------


def role_needed(status_without: int, status_viewer: int) -> str:
    """The role an operation turned out to need, from its answers to no token and to a viewer's."""
    if status_without != 401:
        return "none"
    return "admin" if status_viewer == 403 else "viewer"


async def test_every_operation_answers_each_caller_as_described(start_server: Start, spec: dict[str, Any]) -> None:
    """With tokens configured, a request without one is a 401 and a viewer's change an admin's to make
    a 403, each listed for its operation; so is whatever the operation answers past the check."""
    client = await start_server(admin_tokens=(ADMIN,), viewer_tokens=(VIEWER,))
    needed: dict[tuple[str, str], str] = {}
    for path, method, operation in operations(spec):
        url = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m[1]], path)
        body: dict[str, Any] = {"json": {}} if method in ("post", "patch") else {}
        statuses = []
        for token in (None, VIEWER, ADMIN):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            response, _ = await answer(client, spec, method, path, url, headers=headers, **body)
            statuses.append(response.status)
        assert statuses[2] not in (401, 403), f"an admin may do anything: {method} {path} -> {statuses}"
        needed[(path, method)] = role_needed(statuses[0], statuses[1])
        says_admin = "(admin)" in operation["summary"]
        assert (needed[(path, method)] == "admin") == says_admin, f"{method} {path}: {statuses}, summary: {says_admin}"
        says_open = operation.get("security") == []
        assert (needed[(path, method)] == "none") == says_open, f"{method} {path}: {statuses}, security: {says_open}"
    assert needed[("/healthz", "get")] == "none"


async def test_the_event_id_is_bounded_as_the_route_is(start_server: Start, spec: dict[str, Any]) -> None:
    [parameter] = spec["paths"]["/api/events/{event}/snapshot.jpg"]["parameters"]
    largest = parameter["schema"]["maximum"]
    client = await start_server()
    path = "/api/events/{event}/snapshot.jpg"
    _, body = await answer(client, spec, "get", path, f"/api/events/{largest}/snapshot.jpg")
    assert "event history is off" in json.loads(body)["error"], "the largest id the description allows reaches it"
    response = await client.get(f"/api/events/{largest + 1}/snapshot.jpg")
    assert "no such API route" in (await response.json())["error"]


# -- changes ------------------------------------------------------------------------------------------


async def test_changes_are_answered_as_described(start_server: Start, spec: dict[str, Any]) -> None:
    """StreamChange takes what PATCH takes (flat options; not an empty ``options`` alone), and every
    answer to a change, a refused ``?persist`` included, is listed."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    change = validator(spec, "/components/schemas/StreamChange")
    stream = "/api/streams/{stream}"
    for body, status in (
        ({"conf": 0.6}, 200),
        ({"options": {"iou": 0.5}}, 200),
        ({"options": {}, "conf": 0.5}, 200),
        ({"id": "cam", "loop": False}, 200),
        ({"options": {}}, 400),
        ({}, 400),
        ({"conf": 0.6, "options": {"conf": 0.6}}, 400),
    ):
        response, text = await answer(client, spec, "patch", stream, "/api/streams/cam", json=body)
        assert response.status == status, (body, text)
        if status == 200:
            assert change.is_valid(body), body
        elif not body or body == {"options": {}}:
            assert not change.is_valid(body), f"the description would let a client send {body}"
    for persist in ("x", "2", "yes"):
        response, _ = await answer(client, spec, "delete", stream, f"/api/streams/cam?persist={persist}")
        assert response.status == 400
    new = validator(spec, "/components/schemas/NewStream")
    for added in ({"id": "flat", "uri": "scene:?seed=2", "conf": 0.4}, {"id": "nested", "uri": "scene:?seed=2"}):
        assert new.is_valid(added)
        response, _ = await answer(client, spec, "post", "/api/streams", json=added)
        assert response.status == 201
    response, _ = await answer(client, spec, "delete", stream, "/api/streams/flat")
    assert response.status == 204


# -- a live stream's answers --------------------------------------------------------------------------


async def test_a_live_streams_answers_are_what_the_description_says(
    start_server: Start, spec: dict[str, Any], tmp_path: Path
) -> None:
    """Every field the server sends is described (the Stream schema missed 14 of them), and the bodies
    the description left as bare objects (tracks, counts, WebRTC config, event outputs) have theirs."""
    client = await start_server(events=EventsSettings(history=HistorySettings(tmp_path / "events.db")))
    stream = "/api/streams/{stream}"
    body = {"id": "cam", "uri": SCENE, "zones": [ZONE], "lines": [LINE]}
    response, _ = await answer(client, spec, "post", "/api/streams", json=body)
    assert response.status == 201
    await answer(client, spec, "get", f"{stream}/snapshot.jpg", "/api/streams/cam/snapshot.jpg")  # 200, or 503 yet

    async def tracked() -> dict[str, Any] | None:
        _, text = await answer(client, spec, "get", f"{stream}/tracks", "/api/streams/cam/tracks")
        found: dict[str, Any] = json.loads(text)
        return found if found["tracks"] else None

    await eventually(tracked, timeout_s=60, what="a frame with tracks")
    response, text = await answer(client, spec, "get", stream, "/api/streams/cam")
    shown = json.loads(text)
    assert response.status == 200 and set(shown) == set(spec["components"]["schemas"]["Stream"]["required"])
    await answer(client, spec, "get", "/api/streams")
    response, _ = await answer(client, spec, "get", f"{stream}/counts", "/api/streams/cam/counts")
    assert response.status == 200
    response, _ = await answer(client, spec, "get", f"{stream}/snapshot.jpg", "/api/streams/cam/snapshot.jpg")
    assert response.status == 200 and response.headers["X-Segcast-Seq"].isdigit()
    for path in ("/healthz", "/api/viewer", "/api/webrtc/config", "/api/events/outputs"):
        response, _ = await answer(client, spec, "get", path)
        assert response.status == 200, path

    async def pictured() -> dict[str, Any] | None:
        _, text = await answer(client, spec, "get", "/api/events")
        events: list[dict[str, Any]] = json.loads(text)["events"]
        return next((event for event in events if event["snapshot"]), None)

    event = await eventually(pictured, timeout_s=60, what="an event stored with its snapshot")
    picture = "/api/events/{event}/snapshot.jpg"
    response, _ = await answer(client, spec, "get", picture, event["snapshot"])
    assert response.status == 200
    revalidate = {"If-None-Match": response.headers["ETag"]}
    again, _ = await answer(client, spec, "get", picture, event["snapshot"], headers=revalidate)
    assert again.status == 304


def test_the_frame_example_in_the_protocol_doc_has_every_track_field(spec: dict[str, Any]) -> None:
    """A client written from the example must not meet a track field it never saw (``zones``)."""
    [example] = re.findall(r"```json\n(\{\"type\": \"frame\".*?)\n```", (DOCS / "protocol.md").read_text(), re.DOTALL)
    tracks = json.loads(example)["tracks"]
    track = validator(strict(spec), "/components/schemas/Track")
    assert tracks
    for documented in tracks:
        assert not list(track.iter_errors(documented)), [e.message for e in track.iter_errors(documented)]
