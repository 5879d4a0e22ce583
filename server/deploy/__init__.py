"""Running one config file's cameras as several segcast nodes on one machine (``segcast split``).

One segcast process is bound by its Python interpreter lock, not by a GPU or the cores: on a GPU box
several processes sharing the GPU carry several times the cameras one does (docs/scaling.md). Running
them by hand means a config file per node and an nginx entrance that knows every node's address;
`server.deploy.split` writes both from the one config file a user already has.
"""
