"""`python -m bench.inbox`: server time and SQL queries of the inbox and conversation pages against bare floors.

`dataset` builds the clinics (100,000 conversations, 2,000,000 messages, plus a neighbour) with set-based SQL; `urls`
is the bench's urlconf (bench.admin's plus a bare view behind `admin_view`); `__main__` measures and reports. See
bench/README.md and docs/benchmarks.md.
"""
