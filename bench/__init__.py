"""Side-by-side benchmark of repid_django and its peers on one local redis-server.

Run it with ``python -m bench`` (see bench/README.md).
"""
