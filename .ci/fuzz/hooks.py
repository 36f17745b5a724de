"""Schemathesis hooks for Data Storage: a refused request stores nothing.

Before each call the stored state is read straight from the database (the events' count and
last seq, the legal holds' count and releases); after a refused call (any status of 400 or
more) it must be the same. The fuzzer runs with one worker, so no other request of the run
changes the state in between.
"""

import os
import sqlite3

import schemathesis

STATE_SQL = (
    "SELECT (SELECT count(*) FROM audit_events), "
    "(SELECT coalesce(max(seq), 0) FROM audit_events), "
    "(SELECT count(*) FROM legal_holds), "
    "(SELECT count(released_at) FROM legal_holds)"
)

_before = {}


def _state():
    target = os.environ["FUZZ_DATABASE"]
    if target.startswith("sqlite:"):
        path = target.removeprefix("sqlite:")
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return tuple(conn.execute(STATE_SQL).fetchone())
    import psycopg

    with psycopg.connect(target) as conn:
        return tuple(conn.execute(STATE_SQL).fetchone())


@schemathesis.hook
def before_call(context, case, kwargs):
    _before["state"] = _state()


@schemathesis.check
def refused_requests_store_nothing(ctx, response, case):
    """A refused request (status 400 or more) leaves the stored events and holds as they were."""
    if response.status_code < 400 or "state" not in _before:
        return None
    after = _state()
    if after != _before["state"]:
        raise AssertionError(
            f"a request answered {response.status_code} changed what is stored: "
            f"{_before['state']} -> {after} (events, last seq, holds, releases)"
        )
    return None
