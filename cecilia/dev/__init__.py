"""The developer runner behind the README's `make run` and `make test`.

`services` provides PostgreSQL and Redis (the ones named by DATABASE_URL / REDIS_URL, or private embedded servers
under ./.data/ when those are unset); `runner` is the command line (`python -m cecilia.dev run|exec`) that starts the
web, worker and beat processes or any command against those services, and stops everything it started on exit.

Development tooling only: nothing in the product imports this package.
"""
