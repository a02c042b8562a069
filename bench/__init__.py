"""siloport's benchmark: a generator of realistic exports and an end-to-end import benchmark against
PostgreSQL's own bulk load (``python -m bench --help``)."""
