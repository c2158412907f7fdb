"""Lean protocol clients: HTTP/1.1 to the upstream, RESP to Redis, and the exchange they share."""
