"""Delivery: from a tracked frame to every viewer. `encode` draws (`annotate`) and JPEG-encodes each
result once per wanted variant on its own thread; `hub` fans the packets out on the event loop."""
