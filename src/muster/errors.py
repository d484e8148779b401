"""Errors raised by muster.

Every error muster raises on purpose derives from :class:`DiscoveryError`::

    DiscoveryError
    ├── ConfigurationError            bad input handed to muster (also a ValueError)
    │   ├── InvalidEntryError         an address that is not host:port
    │   ├── InvalidURLError           a discovery URL that cannot be used
    │   │   └── UnsupportedSchemeError
    │   ├── InvalidOptionError        a discovery option that is unknown or malformed
    │   └── InvalidDurationError      a duration not in Go's syntax
    ├── UnsupportedOperationError     the backend cannot do this (register on nodes://)
    └── BackendError                  talking to the backend failed
        ├── BackendUnavailableError   could not reach it, or no answer in time
        │   └── WatchTimeoutError     no membership arrived before a deadline
        └── BackendResponseError      it answered, but with an error or nonsense
            └── ClusterNotFoundError  the token names no cluster

A watch reports a :class:`BackendError` and keeps going; the others are raised
before anything starts and mean the caller must change what it asked for.
"""

from __future__ import annotations


class DiscoveryError(Exception):
    """Base class of every error muster raises on purpose."""


class ConfigurationError(DiscoveryError, ValueError):
    """Input handed to muster cannot be used as given."""


class InvalidEntryError(ConfigurationError):
    """An address is not of the form host:port with a port from 1 to 65535."""


class InvalidURLError(ConfigurationError):
    """A discovery URL cannot be turned into a backend."""


class UnsupportedSchemeError(InvalidURLError):
    """A discovery URL names a scheme no backend serves."""


class InvalidOptionError(ConfigurationError):
    """A discovery option is malformed, unknown to the backend, or incomplete."""


class InvalidDurationError(ConfigurationError):
    """A duration is not written in Go's syntax (``500ms``, ``60s``, ``1m30s``)."""


class UnsupportedOperationError(DiscoveryError):
    """The backend cannot perform this operation, by design."""

    def __init__(self, scheme: str, operation: str) -> None:
        super().__init__(
            f"the {scheme}:// discovery backend does not support {operation}; "
            "use a backend that nodes can join, such as token://"
        )
        self.scheme = scheme
        self.operation = operation


class BackendError(DiscoveryError):
    """Talking to the discovery backend failed; trying again may succeed."""


class BackendUnavailableError(BackendError):
    """The backend could not be reached, or did not answer in time."""


class WatchTimeoutError(BackendUnavailableError):
    """No membership arrived before the deadline."""


class BackendResponseError(BackendError):
    """The backend answered with an error status or a body muster cannot read."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ClusterNotFoundError(BackendResponseError):
    """The discovery service knows no cluster with this token."""
