"""How the app meets the network, before any route runs: the port taken early, the connections
admitted per client, the time limits, the path prefix a reverse proxy adds, and request bodies read
within one bound."""
