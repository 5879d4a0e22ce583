"""The nginx configuration of the one address in front of several segcast nodes.

One generator (`entrance_config`) for the entrance `segcast split` writes, its nodes at fixed local
addresses, and for deploy/'s Compose and Kubernetes entrances, theirs at names Docker's DNS or a
Service answers (tests/test_deploy_generated.py holds those files to it): a path per node with the
prefix cut off (``/node-1/ws`` reaches node 1 as ``/ws``), WebSockets and MJPEG passed on as they
come, an index linking each node and All cameras (``web/fleet.html``, served by whichever node
answers), a page of its own for a node that does not answer (JSON for its ``api/``, ``metrics`` and
``healthz``: what asks for those reads JSON), ``/healthz``, a single box's addresses of one camera
(``/embed/cam2``, ``/api/streams/cam2/...``) redirected to the node that runs it where the nodes'
cameras are given (`camera_redirects`), there too ``/fleet.json``, which node runs which camera, to
whoever a node would answer (`fleet_map`), and for any other path (a single box's ``/api/streams``,
``/metrics``, kept after a split) a 404 that lists the nodes' paths: JSON for the API and ``/metrics``, a
page otherwise. A node that accepts connections and never answers gets that page too after
`NODE_ANSWER_S`, but for its streams, which may stay quiet far longer (`STREAM_QUIET_S`).
tests/test_deploy.py runs every entrance test on it in a real nginx.

The entrance's own ``/healthz`` says only that nginx answers, whatever the nodes do: a node's health
is ``/node-N/healthz``, the node's own answer, or a 502 naming the node while it does not answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from server.config import STREAM_ID_PATTERN

#: What nginx buffers on disk (a large request body, say), each in a folder of its own.
TEMPORARY_FILES = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
#: The folder of the entrance that serves All cameras' page (``/all/static/``) from any node.
ALL_NODES = "all"
#: A node that failed to answer is left out of All cameras' group this long, then tried again.
NODE_RETRY_S = 10
#: How long All cameras waits for a node to accept a connection before asking the next one.
NODE_CONNECT_S = 5
#: How long All cameras waits for a node's answer (a file of the viewer's, from memory) before asking
#: the next one: a node whose event loop is blocked accepts connections and never answers.
NODE_PAGE_S = 5
#: The longest All cameras' page or script waits, however many nodes it asks in turn.
ALL_NODES_WAIT_S = 15
#: How long a node's API, pages, ``/metrics`` and ``/healthz`` may go without a byte of the answer
#: before its client gets the 502 that says the node is not answering (a node that accepts connections
#: and never answers, its loop blocked, held every client for an hour). nginx's own default, and far
#: beyond a healthy node's slowest answer (adding a camera checks its source for up to 10 s).
NODE_ANSWER_S = 60
#: How long a WebSocket or MJPEG response may go without a byte from its node: far beyond the quietest
#: healthy one (an MJPEG at the lowest ``max_fps``, 0.01, sends a part each 100 s, a notice instead
#: while its camera reconnects; a WebSocket is pinged each 20 s), so a stream is never cut for quiet.
STREAM_QUIET_S = 3600
#: A node's paths that stream (`STREAM_QUIET_S`), after its prefix: the viewer's WebSocket, and MJPEG.
STREAM_PATHS = r"(?:ws|api/streams/[^/]+/mjpeg)"
#: The access log of an entrance with no folder of its own: the nginx image's, which goes to its output.
CONTAINER_ACCESS_LOG = "/var/log/nginx/access.log"
#: The connections each nginx worker takes at once: every viewer holds a WebSocket or an MJPEG response open.
WORKER_CONNECTIONS = 4096
#: The files each nginx worker may hold open. A viewer takes two (its connection and the one to its
#: node), logs a few more: the usual limit of 1024 left viewers past about 500 a bare 500.
WORKER_OPEN_FILES = 4 * WORKER_CONNECTIONS


@dataclass(frozen=True, slots=True)
class Listen:
    """Where the entrance listens (``host`` empty: on every IPv4 address), and the certificate it serves
    HTTPS with (None: plain HTTP)."""

    host: str
    port: int
    tls_cert: Path | None = None
    tls_key: Path | None = None


@dataclass(frozen=True, slots=True)
class Nodes:
    """The nodes behind an entrance: each one's path (``node-1``) and address (``host:port``), and
    ``resolver``, the DNS server that looks their names up per request (Docker's: a node recreated with
    a new address is found again, and the entrance starts while one is down); None: looked up once, at
    start (an IP address, or a Kubernetes Service, whose address does not change with its pods').
    ``streams``: the camera ids each node runs, in node order (empty: none known, so none redirected)."""

    names: tuple[str, ...]
    addresses: tuple[str, ...]
    resolver: str | None = None
    streams: tuple[tuple[str, ...], ...] = ()


def node_name(index: int) -> str:
    """The path (and name) of node ``index``, counted from 1: ``node-1``, as in deploy/compose."""
    return f"node-{index}"


def nginx_config(
    listen: Listen, node_ports: Sequence[int], source: str, state: Path, streams: Sequence[Sequence[str]] = ()
) -> str:
    """nginx.conf text for an entrance at ``listen`` in front of nodes on 127.0.0.1 at ``node_ports``,
    running the cameras ``streams`` names (each node's ids, in node order: `camera_redirects`).

    Its pid file, logs and temporary files go in ``state`` (an absolute folder), not in the system's
    /run and /var: so nginx runs as whoever starts it, and root is only needed for a port under 1024.
    """
    names = tuple(node_name(i) for i in range(1, len(node_ports) + 1))
    header = f"""\
# The entrance in front of the segcast nodes split from {source} (`segcast split`): one address, a
# path per node (/node-1/ -> 127.0.0.1:{node_ports[0]}/), WebSockets and MJPEG included.
# Run it with: nginx -e {_quoted(state / "error.log")} -c <this file's absolute path>  (sudo for a port under 1024)
# and stop it with the same arguments and -s stop (its pid file is named below, not nginx's own).
"""
    addresses = tuple(f"127.0.0.1:{port}" for port in node_ports)
    return entrance_config(listen, Nodes(names, addresses, streams=tuple(map(tuple, streams))), header, state)


def entrance_config(
    listen: Listen, nodes: Nodes, header: str, state: Path | None = None, workers: int | None = None
) -> str:
    """nginx.conf text, after the comment ``header``, for an entrance at ``listen`` in front of ``nodes``.

    With ``state`` (an absolute folder), its pid file, logs and temporary files go there; without, in
    nginx's own places (an nginx container image's, whose logs go to the container's output).
    ``workers``: how many worker processes nginx starts; None, one per CPU of the machine (``auto``),
    which a container's memory limit may not allow for: nginx counts the host's CPUs, not the container's.
    """
    names = nodes.names
    links = "\n".join(f'<li><a href="{name}/">{name}</a></li>' for name in names)
    resolve = " resolve" if nodes.resolver is not None else ""
    servers = "\n".join(
        f"        server {address}{resolve} max_fails=1 fail_timeout={NODE_RETRY_S}s;" for address in nodes.addresses
    )
    node_links = "\n".join(f'<li><a href="${{entrance_index}}{name}/">{name}</a></li>' for name in names)
    not_here = json.dumps(  # no ' or $ in it: nginx would end the string or read a variable
        {
            "error": "this is the entrance of several segcast nodes: each node has its API under its own path "
            f"(/{names[0]}/api/streams ...)",
            "nodes": [f"/{name}/" for name in names],
        }
    )
    locations = "\n\n".join(
        _node_location(name, address, nodes.resolver is not None)
        for name, address in zip(names, nodes.addresses, strict=True)
    )
    tls = ""
    if listen.tls_cert is not None and listen.tls_key is not None:
        tls = "".join(
            f"\n        {directive} {_quoted(path)};"
            for directive, path in (("ssl_certificate", listen.tls_cert), ("ssl_certificate_key", listen.tls_key))
        )
    return f"""\
{header}
worker_processes {"auto" if workers is None else workers};
worker_rlimit_nofile {WORKER_OPEN_FILES};{_own_files(state)}

events {{
    worker_connections {WORKER_CONNECTIONS};  # every viewer holds a WebSocket or an MJPEG response open
}}

http {{
    # Paths without their queries: the viewer's ?token= would be kept in the log (its Referer too).
    log_format segcast '$remote_addr [$time_local] "$request_method $uri $server_protocol" $status $body_bytes_sent';
    access_log {_quoted(state / "access.log") if state is not None else CONTAINER_ACCESS_LOG} segcast;
    # What nginx answers itself is typed by its default_type, never by the path's extension (its
    # built-in types made the JSON 404 of /api/streams/x/snapshot.jpg image/jpeg); nodes type their own.
    types {{}}
{_temporary_files(state)}{_looked_up(nodes.resolver)}
    # Any node serves All cameras' page; one that fails is skipped for a while. Each client (by its
    # address) keeps to one node while it answers: a page and its scripts come from one version, even
    # mid-upgrade.
    upstream segcast_nodes {{
        zone segcast_nodes 64k;
        hash $remote_addr consistent;
{servers}
    }}

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ""      close;
    }}
{_NOT_ANSWERING_AS}{_BACK_TO_INDEX}
    proxy_http_version 1.1;
    proxy_set_header Host $http_host;
    proxy_set_header Upgrade $http_upgrade;  # the viewer's WebSocket (<prefix>/ws)
    proxy_set_header Connection $connection_upgrade;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    # Where the node is served (set per location, as a location's own proxy_set_header would drop
    # every one above): the node puts the links and Location headers of its API under it.
    proxy_set_header X-Forwarded-Prefix $forwarded_prefix;
    proxy_buffering off;  # MJPEG: every frame goes out as it comes
    # A node that accepts and never answers gets the 502 below after this; its streams wait far longer.
    proxy_read_timeout {NODE_ANSWER_S}s;
    proxy_send_timeout {NODE_ANSWER_S}s;
    absolute_redirect off;  # /{names[0]} -> /{names[0]}/ stays right behind another proxy

    server {{
        listen {_listen_address(listen)}{" ssl" if tls else ""};{tls}

        location = / {{
            # A kiosk's bookmark of a single box's wall (/?wall=1&token=..., ?wall alone; not ?wall=0, as the
            # viewer reads it): every node's, its query kept.
            if ($args ~ "(^|&)wall(&|$|=(?!0(&|$)))") {{
                return 307 {ALL_NODES}/static/fleet.html?nodes={",".join(names)}&$args;
            }}
            default_type text/html;
            return 200 '<!doctype html><meta charset="utf-8"><title>segcast</title>
<h1>segcast nodes</h1>
<p><a href="{ALL_NODES}/static/fleet.html?nodes={",".join(names)}">All cameras</a></p>
<ul>
{links}
</ul>
';
        }}

        # nginx answers: not a node's health (that is /node-N/healthz, 502 while it does not answer).
        location = /healthz {{
            default_type text/plain;
            return 200 "ok\\n";
        }}
{_NOT_ANSWERING}{camera_redirects(names, nodes.streams)}{fleet_map(names, nodes.streams)}
        # Any other path (a single box's /api/streams, /metrics, a camera no node runs): where the nodes are,
        # not nginx's bare 404. JSON for API clients and scrapers, a page for a person.
        location ~ ^/(?:api(?:/|$)|metrics$) {{
            default_type application/json;
            return 404 '{not_here}\\n';
        }}

        location / {{
            default_type text/html;
            return 404 '<!doctype html><meta charset="utf-8"><title>segcast: no such page</title>
<h1>No such page at this entrance</h1>
<p>This is the entrance of several segcast nodes: each node has its pages and API under its own path.</p>
<ul>
{node_links}
</ul>
<p><a href="$entrance_index">Every node</a></p>
';
        }}

        # All cameras (web/fleet.html) from whichever node answers. Only /static/: an API call here
        # would land on any node. A 404 is asked of the next node: a page's scripts under its tag
        # (static/<tag>/) are missing on a node of an older version, where a client's next request
        # may land once the node its page came from is back from being skipped.
        location /{ALL_NODES}/static/ {{
            set $forwarded_prefix /{ALL_NODES};
            proxy_pass http://segcast_nodes/static/;
            proxy_next_upstream error timeout http_502 http_503 http_504 http_404;
            proxy_next_upstream_timeout {ALL_NODES_WAIT_S}s;
            proxy_connect_timeout {NODE_CONNECT_S}s;
            proxy_read_timeout {NODE_PAGE_S}s;  # one that accepts and never answers is skipped too
        }}

        # The prefix is cut off: a node sees /ws, /api/streams... as if alone. Its streams (WebSocket,
        # MJPEG) in a location of their own, quiet as long as a healthy one is.
{locations}
    }}
}}
"""


def _node_location(name: str, address: str, looked_up: bool) -> str:
    """The location of node ``name`` at ``address``, its prefix cut off, with its streams' nested in it.

    Looked up per request (``looked_up``), the address is a variable, which nginx resolves at each
    request only in a ``proxy_pass`` without a path: the prefix is then cut by a ``rewrite``. Else
    ``proxy_pass``'s trailing ``/`` cuts it. The streams' location is a regular expression, where
    ``proxy_pass`` may have no path either: a ``rewrite`` cuts it there. Rewrite directives (``set``)
    are not inherited by a nested location: each sets its own.
    """
    node = f"set $node {address};\n" if looked_up else ""  # each level sets its own
    if looked_up:
        passed = f"rewrite ^/{name}(/.*)$ $1 break;\n            proxy_pass http://$node;\n"
    else:
        passed = f"proxy_pass http://{address}/;\n"
    return (
        f"        location /{name}/ {{\n"
        f"{' ' * 12 + node if node else ''}"
        f"            set $forwarded_prefix /{name};\n"
        f"            {passed}\n"
        f"            location ~ ^/{name}/{STREAM_PATHS}$ {{\n"
        f"{' ' * 16 + node if node else ''}"
        f"                set $forwarded_prefix /{name};\n"
        f"                rewrite ^/{name}(/.*)$ $1 break;\n"
        f"                proxy_pass http://{'$node' if looked_up else address};\n"
        f"                proxy_read_timeout {STREAM_QUIET_S}s;\n"
        f"                proxy_send_timeout {STREAM_QUIET_S}s;\n"
        "            }\n"
        "        }"
    )


def camera_redirects(names: Sequence[str], streams: Sequence[Sequence[str]]) -> str:
    """Locations that send a single box's addresses of one camera to the node ``names[i]`` whose
    ``streams[i]`` has it: ``/embed/<id>``, ``/api/streams/<id>`` and everything under it (snapshot,
    MJPEG, counts ...), the query kept, so a dashboard's ``<iframe>`` or ``<img>`` saved before the split
    works on. A 307, never a 301: browsers keep a 301 for good, and a camera moved by a later split
    (which writes these anew) must be followed there; a 307 also keeps an API call's method and body.

    Ids are matched whole (``location =``, and ``^~`` with the trailing ``/``: ``cam2`` is not
    ``cam22``, and no regular expression of the entrance's 404s is asked after). They may hold only
    `STREAM_ID_PATTERN`'s letters, digits, ``-`` and ``_``: nothing nginx would read as syntax or a
    variable. All lie under ``/embed/`` and ``/api/streams/``, where the entrance has no route of its
    own, so a camera named ``healthz`` or ``node-1`` shadows nothing. A camera two nodes list (their
    files edited by hand) goes to the first. The box's one WebSocket, ``/ws``, is not per camera and is
    not redirected (browsers do not follow a redirect of a WebSocket's handshake either): a viewer
    connects to its node's ``/node-N/ws``.
    """
    if not streams:
        return ""
    node_of: dict[str, str] = {}
    for name, ids in zip(names, streams, strict=True):
        for stream_id in ids:
            node_of.setdefault(_in_nginx(stream_id), name)
    if not node_of:
        return ""
    blocks = []
    for stream_id, name in node_of.items():
        embed, api = f"/embed/{stream_id}", f"/api/streams/{stream_id}"
        for match, target in (
            (f"= {embed}", f"{embed}$is_args$args"),
            (f"= {api}", f"{api}$is_args$args"),
            (f"^~ {api}/", "$request_uri"),  # as asked, its query too: nothing decoded
        ):
            blocks.append(f"        location {match} {{\n            return 307 /{name}{target};\n        }}")
    return (
        "\n        # A single box's addresses of each camera, saved before the split: to the node that runs it.\n"
        + "\n".join(blocks)
        + "\n"
        + _history_redirect(names[0], node_of)
    )


def _history_redirect(first: str, node_of: dict[str, str]) -> str:
    """The location of a single box's event history page: ``?stream=<id>`` to the node that runs the camera
    (its events since the split), any other to node ``first``, which goes on in the box's history file
    (`server.deploy.split`): every event from before the split is there. Its query kept, filters and all."""
    page = "/static/history.html"
    cases = "".join(
        f"            if ($arg_stream = {stream_id}) {{\n                return 307 /{name}{page}$is_args$args;\n"
        "            }\n"
        for stream_id, name in node_of.items()
        if name != first
    )
    return f"        location = {page} {{\n{cases}            return 307 /{first}{page}$is_args$args;\n        }}\n"


#: Where the entrance says which node runs which camera (`fleet_map`). At its root, beside ``/healthz``:
#: no node's path (a ``node-N/`` folder, no ``.`` in it) and no address of a single box (its files lie
#: under ``/static/``, its API under ``/api/``), so All cameras opened on a node, or a box, asks there
#: and gets that node's 404: no map.
FLEET_MAP_PATH = "/fleet.json"


def fleet_map(names: Sequence[str], streams: Sequence[Sequence[str]]) -> str:
    """The locations that answer `FLEET_MAP_PATH` with `fleet_map_json`, to whoever a node's
    ``/api/streams`` would answer: All cameras (web/fleet.js) asks it once a node is unreachable, to say
    which cameras that leaves out, and that a node its address lists is no longer one of this entrance (a
    re-split wrote it without). Nothing where no cameras are given (deploy/'s Compose and Kubernetes
    entrances): the path gets the entrance's 404 there, and the page does without.

    The ids name every camera and its node: nginx asks a node (``auth_request``) whether the request's
    token holds, its ``Authorization`` and its ``?token=`` (a signed one, as in All cameras' address)
    passed on, any node of the group All cameras' page comes from, so one that is down makes the map
    wait for the next, not fail. An open node (no tokens) lets everyone read the map, as its API. A
    refusal is the node's 401 (its ``WWW-Authenticate`` too), with segcast's error shape; no node
    answering is a 502 naming that. The map itself is a named location's, reached by ``try_files``:
    a ``return`` in the location would answer before nginx asks (it runs before the access phase).

    Names and ids are checked as `camera_redirects`' ids are: JSON of them holds no ``'`` (which would
    end nginx's string) and no ``$`` (a variable).
    """
    if not streams:
        return ""
    refused = json.dumps(
        {"error": "a valid token is needed: send Authorization: Bearer <token>, or ?token=<signed token>"}
    )
    unchecked = json.dumps(
        {"error": "no node answers to check the token this map needs: they are stopped, starting or overloaded"}
    )
    return f"""
        # Which node runs which camera, for All cameras (web/fleet.js), to whoever a node's API would answer
        # (a node of the group is asked, the next where one is down); a re-split writes it anew.
        location = {FLEET_MAP_PATH} {{
            set $segcast_map_query $is_args$args;  # the asking request's: a subrequest has none of its own
            auth_request /segcast-map-access;
            error_page 401 = @segcast_map_refused;
            error_page 500 = @segcast_map_unchecked;  # auth_request's answer when no node answered it
            try_files /segcast-no-such-file @segcast_fleet_map;
        }}

        location = /segcast-map-access {{
            internal;
            proxy_pass http://segcast_nodes/api/viewer$segcast_map_query;  # a viewer's read, as /api/streams
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Host $http_host;  # set here, none of the server's are kept: the node's name check
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_next_upstream error timeout http_502 http_503 http_504;
            proxy_next_upstream_timeout {ALL_NODES_WAIT_S}s;
            proxy_connect_timeout {NODE_CONNECT_S}s;
            proxy_read_timeout {NODE_PAGE_S}s;
        }}

        location @segcast_fleet_map {{
            default_type application/json;
            add_header Cache-Control no-cache;
            return 200 '{json.dumps(fleet_map_json(names, streams))}\n';
        }}

        location @segcast_map_refused {{
            default_type application/json;
            return 401 '{refused}\n';
        }}

        location @segcast_map_unchecked {{
            default_type application/json;
            return 502 '{unchecked}\n';
        }}
"""


def fleet_map_json(names: Sequence[str], streams: Sequence[Sequence[str]]) -> dict[str, list[dict[str, object]]]:
    """Which node runs which camera, as the entrance's map says it (`fleet_map`): every node ``names[i]``
    with the cameras ``streams[i]`` lists, in node order: ``{"nodes": [{"name": "node-1", "streams":
    ["cam1", "cam3"]}, ...]}``. ValueError for a name or id nginx could misread (`_in_nginx`)."""
    return {
        "nodes": [
            {"name": _in_nginx(name, "node name"), "streams": [_in_nginx(stream_id) for stream_id in ids]}
            for name, ids in zip(names, streams, strict=True)
        ]
    }


def _in_nginx(name: str, what: str = "stream id") -> str:
    """``name``, checked to be one nginx reads as it is: `STREAM_ID_PATTERN`'s letters, digits, ``-``
    and ``_``, nothing nginx would read as syntax or a variable."""
    if not STREAM_ID_PATTERN.match(name):
        raise ValueError(f"{what} {name!r} is not one segcast accepts: it cannot go in nginx.conf")
    return name


def _own_files(state: Path | None) -> str:
    """The pid file and error log in ``state``, each a directive line (nothing: nginx's own)."""
    if state is None:
        return ""
    return f"""
pid {_quoted(state / "nginx.pid")};
# A request a node fails to answer is logged here with its whole request line, a viewer's ?token=
# included: the split makes this file, and the access log, its owner's alone.
error_log {_quoted(state / "error.log")};"""


def _temporary_files(state: Path | None) -> str:
    """Where nginx buffers to disk, in ``state`` (nothing: nginx's own places)."""
    if state is None:
        return ""
    return "".join(f"    {kind}_temp_path {_quoted(state / kind)};\n" for kind in TEMPORARY_FILES)


def _looked_up(resolver: str | None) -> str:
    """The ``resolver`` directive that looks node names up per request (nothing: once, at start)."""
    if resolver is None:
        return ""
    return f"""
    # Node names are looked up per request, so a node recreated with a new address is found again,
    # and the entrance starts even while a node is down; `resolve` in the group below (nginx 1.27.3
    # and later) looks them up again as they change.
    resolver {resolver};
"""


#: The way from the page asked for back to the index, relative as the index's own links are (behind
#: another proxy's prefix, "/" would leave the entrance); "/" for a page deeper than a person opens.
_BACK_TO_INDEX = """
    map $request_uri $entrance_index {
        "~^/[^/?]*/[^/?]*(?:[?]|$)"          ../;
        "~^/[^/?]*/[^/?]*/[^/?]*(?:[?]|$)"   ../../;
        default                              /;
    }
"""

#: Which answer a node that does not answer gets (`_NOT_ANSWERING`), by the path asked for: JSON
#: for its API, ``/metrics`` and ``/healthz`` (API clients, scrapers and probes read JSON, as from
#: the node itself; Prometheus marks the target down on the 502 whatever its body), a page otherwise.
#: By ``$request_uri``: a node's streams' location rewrites ``$uri`` to the node's own path.
_NOT_ANSWERING_AS = """
    map $request_uri $segcast_not_answering {
        "~^/[^/?]+/(?:api(?:[/?]|$)|metrics(?:[?]|$)|healthz(?:[?]|$))"   /segcast-not-answering.json;
        default                                                           /segcast-not-answering.html;
    }
"""

#: What a node that does not answer gets, in place of nginx's bare "502 Bad Gateway" (a node's own
#: error responses pass as they are): segcast's error shape naming the node, or a page for a person
#: ($forwarded_prefix, set by the node's location, outlives the redirect to these); and no favicon
#: error in the browser's console.
_NOT_ANSWERING = """
        error_page 502 503 504 =502 $segcast_not_answering;  # timed out too: one status for "not answering"
        location = /segcast-not-answering.json {
            internal;
            default_type application/json;
            return 502 '{"node": "$forwarded_prefix/",
"error": "the node at $forwarded_prefix/ is not answering: it is stopped, starting or overloaded"}\\n';
        }

        location = /segcast-not-answering.html {
            internal;
            default_type text/html;
            return 502 '<!doctype html><meta charset="utf-8"><title>segcast: not answering</title>
<h1>This node is not answering</h1>
<p>It is stopped, starting or overloaded: this page works again once it is back.</p>
<p><a href="$entrance_index">Every node</a></p>
';
        }

        location = /favicon.ico {
            return 204;
        }
"""


def listens_with_tls(config: str) -> bool:
    """Whether the entrance whose nginx.conf text is ``config`` (as `nginx_config` writes it) speaks HTTPS."""
    return _LISTEN_TLS.search(config) is not None


_LISTEN_TLS = re.compile(r"^\s*listen\s[^;#]*\bssl\b", re.MULTILINE)


def _listen_address(listen: Listen) -> str:
    """nginx's ``listen`` argument: an IPv6 address goes in brackets; no host, the port alone (every
    IPv4 address, as in a container)."""
    host = listen.host.strip("[]")
    if not host:
        return str(listen.port)
    return f"[{host}]:{listen.port}" if ":" in host else f"{host}:{listen.port}"


def _quoted(path: Path) -> str:
    """A path as one nginx argument, whatever spaces or quotes it holds."""
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'
