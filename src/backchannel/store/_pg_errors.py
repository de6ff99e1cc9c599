"""Translation of psycopg errors into the Backchannel error tree.

PostgreSQL messages can quote the values of a failing row (``Key (...)=(...)``),
so they are never passed on: each message below says what happened and what to
do next, with only the SQLSTATE for the operator's diagnosis.
"""

from __future__ import annotations

import psycopg
from psycopg import errors as pg
from psycopg_pool import PoolTimeout

from backchannel.errors import StoreUnavailable

#: SQLSTATEs after which the whole transaction may simply be run again.
RETRYABLE = (pg.DeadlockDetected, pg.SerializationFailure)


def translate(exc: Exception) -> StoreUnavailable:
    """A :class:`StoreUnavailable` for ``exc``; raise it ``from None``."""
    if isinstance(exc, PoolTimeout):
        return StoreUnavailable(
            "no PostgreSQL connection became available in time; check that the server runs "
            "and accepts connections (DSN, credentials, max_connections), then retry"
        )
    state = getattr(exc, "sqlstate", None) or "none"
    if isinstance(exc, pg.DiskFull):
        message = "the PostgreSQL server's disk is full; nothing was stored: free space, then retry"
    elif isinstance(exc, pg.InsufficientResources):
        message = "the PostgreSQL server is out of resources; check its disk and memory, then retry"
    elif isinstance(exc, pg.InsufficientPrivilege):
        message = "the database role lacks a privilege the relay needs; grant it, then restart"
    elif isinstance(exc, pg.InvalidSchemaName):
        message = (
            "the search_path names no existing schema; create the schema or fix the DSN options"
        )
    elif isinstance(exc, pg.UndefinedTable | pg.UndefinedFunction):
        message = "the relay schema is missing from this database; reopen the store to migrate"
    elif isinstance(exc, pg.QueryCanceled):
        message = "the database cancelled the request (a timeout); retry later"
    elif isinstance(exc, RETRYABLE):
        message = "the database stayed too busy with conflicting writes; retry later"
    elif isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        message = (
            "cannot reach the PostgreSQL database; check that it runs and the DSN, then retry "
            "(an interrupted request may or may not have been stored: retrying is safe)"
        )
    else:
        message = "the PostgreSQL database refused the request; check the server logs, then retry"
    return StoreUnavailable(f"{message} [SQLSTATE {state}]")
