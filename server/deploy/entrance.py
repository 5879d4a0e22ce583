"""The nginx configuration of the one address in front of a machine's nodes.

The same entrance as deploy/compose/nginx.conf, with the nodes at fixed local addresses instead of
names Docker's DNS answers: a path per node with the prefix cut off (``/node-1/ws`` reaches node 1
as ``/ws``), WebSockets and MJPEG passed on as they come, an index linking each node and All cameras
(``web/fleet.html``, served by whichever node answers), a page of its own for a node that does not
answer (JSON for its ``api/``, ``metrics`` and ``healthz``: what asks for those reads JSON),
``/healthz``, and for any other path (a single box's ``/api/streams``, ``/metrics``,
``/embed/cam1``, kept after a split) a 404 that lists the nodes' paths: JSON for the API and
``/metrics``, a page otherwise. tests/test_deploy.py runs every entrance test on it in a real nginx.

The entrance's own ``/healthz`` says only that nginx answers, whatever the nodes do: a node's health
is ``/node-N/healthz``, the node's own answer, or a 502 naming the node while it does not answer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: What nginx buffers on disk (a large request body, say), each in a folder of its own.
TEMPORARY_FILES = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
#: The folder of the entrance that serves All cameras' page (``/all/static/``) from any node.
ALL_NODES = "all"
#: A node that failed to answer is left out of All cameras' group this long, then tried again.
NODE_RETRY_S = 10
#: How long All cameras waits for a node to accept a connection before asking the next one.
NODE_CONNECT_S = 5


@dataclass(frozen=True, slots=True)
class Listen:
    """Where the entrance listens, and the certificate it serves HTTPS with (None: plain HTTP)."""

    host: str
    port: int
    tls_cert: Path | None = None
    tls_key: Path | None = None


def node_name(index: int) -> str:
    """The path (and name) of node ``index``, counted from 1: ``node-1``, as in deploy/compose."""
    return f"node-{index}"


def nginx_config(listen: Listen, node_ports: Sequence[int], source: str, state: Path) -> str:
    """nginx.conf text for an entrance at ``listen`` in front of nodes on 127.0.0.1 at ``node_ports``.

    Its pid file, logs and temporary files go in ``state`` (an absolute folder), not in the system's
    /run and /var: so nginx runs as whoever starts it, and root is only needed for a port under 1024.
    """
    names = [node_name(i) for i in range(1, len(node_ports) + 1)]
    links = "\n".join(f'<li><a href="{name}/">{name}</a></li>' for name in names)
    servers = "\n".join(
        f"        server 127.0.0.1:{port} max_fails=1 fail_timeout={NODE_RETRY_S}s;" for port in node_ports
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
        f"        location /{name}/ {{\n"
        f"            set $forwarded_prefix /{name};\n"
        f"            proxy_pass http://127.0.0.1:{port}/;\n"
        "        }"
        for name, port in zip(names, node_ports, strict=True)
    )
    temporary = "\n".join(f"    {kind}_temp_path {_quoted(state / kind)};" for kind in TEMPORARY_FILES)
    tls = ""
    if listen.tls_cert is not None and listen.tls_key is not None:
        tls = "".join(
            f"\n        {directive} {_quoted(path)};"
            for directive, path in (("ssl_certificate", listen.tls_cert), ("ssl_certificate_key", listen.tls_key))
        )
    return f"""\
# The entrance in front of the segcast nodes split from {source} (`segcast split`): one address, a
# path per node (/node-1/ -> 127.0.0.1:{node_ports[0]}/), WebSockets and MJPEG included.
# Run it with: nginx -e {_quoted(state / "error.log")} -c <this file's absolute path>  (sudo for a port under 1024)
# and stop it with the same arguments and -s stop (its pid file is named below, not nginx's own).

worker_processes auto;
pid {_quoted(state / "nginx.pid")};
error_log {_quoted(state / "error.log")};

events {{
    worker_connections 4096;  # every viewer holds a WebSocket or an MJPEG response open
}}

http {{
    # Paths without their queries: the viewer's ?token= would be kept in the log (its Referer too).
    log_format segcast '$remote_addr [$time_local] "$request_method $uri $server_protocol" $status $body_bytes_sent';
    access_log {_quoted(state / "access.log")} segcast;
{temporary}

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
{_BACK_TO_INDEX}{_NOT_ANSWERING_AS}
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
    proxy_read_timeout 1h;
    proxy_send_timeout 1h;
    absolute_redirect off;  # /node-1 -> /node-1/ stays right behind another proxy

    server {{
        listen {_listen_address(listen)}{" ssl" if tls else ""};{tls}

        location = / {{
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
{_NOT_ANSWERING}
        # Any other path (a single box's /api/streams, /metrics, /embed/cam1): where the nodes are,
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
            proxy_connect_timeout {NODE_CONNECT_S}s;
        }}

        # The prefix is cut off (proxy_pass ends in /): a node sees /ws, /api/streams... as if alone.
{locations}
    }}
}}
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
_NOT_ANSWERING_AS = """
    map $uri $segcast_not_answering {
        "~^/[^/]+/(?:api(?:/|$)|metrics$|healthz$)"   /segcast-not-answering.json;
        default                                       /segcast-not-answering.html;
    }
"""

#: What a node that does not answer gets, in place of nginx's bare "502 Bad Gateway" (a node's own
#: error responses pass as they are): segcast's error shape naming the node, or a page for a person
#: ($forwarded_prefix, set by the node's location, outlives the redirect to these); and no favicon
#: error in the browser's console.
_NOT_ANSWERING = """
        error_page 502 503 504 $segcast_not_answering;
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


def _listen_address(listen: Listen) -> str:
    """nginx's ``listen`` argument: an IPv6 address goes in brackets."""
    host = listen.host.strip("[]")
    return f"[{host}]:{listen.port}" if ":" in host else f"{host}:{listen.port}"


def _quoted(path: Path) -> str:
    """A path as one nginx argument, whatever spaces or quotes it holds."""
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'
