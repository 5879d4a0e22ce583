"""The HTTP face of the server, by stage: `network` (how a connection and its request arrive),
`access` (who may do what), then the routes here: the REST API, a stream's pictures and readings,
the WebSocket feed, the viewer's pages and ``/metrics``."""
