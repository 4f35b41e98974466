"""`python -m bench.admin`: server time and SQL queries of the admin changelists against a bare view and the index.

`dataset` builds the clinic (10,000 patients, 50,000 appointments); `urls` is the bench's urlconf (the project's
plus a bare view); `__main__` measures and reports. See bench/README.md and docs/benchmarks.md.
"""
