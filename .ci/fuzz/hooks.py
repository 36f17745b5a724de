"""Schemathesis hooks for Data Storage: a refused request stores nothing.

Before each call the stored state is read straight from the database (the events' count and
last seq, the legal holds' count and releases); after a refused call (any status of 400 or
more) it must be the same. The fuzzer runs with one worker, so no other request of the run
changes the state in between. The service's own count of refusals
(`datastorage.access.denied`, written once a minute by a background task, not by the request)
is left out of the state.
"""

import os
import sqlite3

import schemathesis

STATE_SQL = (
    "SELECT (SELECT count(*) FROM audit_events WHERE event_type <> 'datastorage.access.denied'), "
    "(SELECT coalesce(max(seq), 0) FROM audit_events "
    "WHERE event_type <> 'datastorage.access.denied'), "
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


# The default-ignorable characters beyond U+FFFF, which identifiers may not hold. The documents
# state the rule with a pattern, but a pattern cannot name these characters in a way every regex
# dialect reads alike (ECMA-262 sees UTF-16 halves, Python code points), so the patterns leave
# them out and the fuzzer is kept from generating them here.
ASTRAL_IGNORABLE = [(0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF)]


def _holds_astral_ignorable(value):
    if isinstance(value, str):
        return any(lo <= ord(c) <= hi for c in value for lo, hi in ASTRAL_IGNORABLE)
    if isinstance(value, list):
        return any(_holds_astral_ignorable(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_astral_ignorable(k) or _holds_astral_ignorable(v) for k, v in value.items())
    return False


@schemathesis.hook
def filter_body(ctx, body):
    """Leave out the bodies no pattern of the documents can describe (see above)."""
    return not _holds_astral_ignorable(body)

