"""Backchannel: a secure diplomatic mailbox between two missions.

The public surface is the client API (``backchannel.client``); the protocol
core (``backchannel.protocol``) is pure and does no I/O.
"""

__version__ = "0.1.0"
