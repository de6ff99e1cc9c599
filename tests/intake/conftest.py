"""Intake tests use the client tests' in-process relay."""

from tests.client.conftest import relay

__all__ = ["relay"]
