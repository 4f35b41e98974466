"""Benchmark of the Evolution webhook on the real server: `python -m bench.webhook` (see `__main__`).

`settings` and `urls` are what the bench's daphne runs with (the product's settings and URLs plus a bare view);
`load.lua` is the wrk script that makes every request a distinct webhook; `load` is the Python load generator used
when wrk is not installed.
"""
