"""The HTTP face of the server: the REST API, the WebSocket feed, the viewer's pages, access control,
metrics, and how the app meets the network (listening, time limits, request bodies, errors)."""
