"""The MQTT output: events and per-stream counts to a broker, with Home Assistant discovery.

`connection` owns the one connection and the topics' layout (read its docstring first); it takes
events from the `outbox` and what each stream's retained state needs from `retained`, names them with
`topics` and sends them through the `window` of publishes on their way; what it reads back from the
broker it asks for through `readback`. The events' pictures, where ``snapshots`` is on, are encoded and
kept for the outbox by `snapshots`.
"""
