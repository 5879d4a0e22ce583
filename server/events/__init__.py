"""Events out of the pipeline: to MQTT (with Home Assistant discovery), webhooks and a local history.

`outputs` builds the sinks the ``[events]`` table (`config`) asks for and hands each of them every
event, on the loop, without waiting: each `sink.Sink` keeps its own bounded queue and delivers from
its own task (`mqtt`, `webhook`) or thread (`history`), so a broker that is down, a webhook that hangs
or a full disk slows nobody but itself. `api` serves the history and the outputs' health over REST.
The MQTT output and the history take several modules each, so each is a package of its own (`mqtt`,
`history`); what every output shares (`sink`, `counts`, `snapshot`, `config`) stays here with them.
"""
