"""Discovery: who is in a cluster, and how a node joins it."""

from muster.errors import (
    BackendError,
    BackendResponseError,
    BackendUnavailableError,
    ClusterNotFoundError,
    ConfigurationError,
    DiscoveryError,
    InvalidDurationError,
    InvalidEntryError,
    InvalidOptionError,
    InvalidURLError,
    UnsupportedOperationError,
    UnsupportedSchemeError,
    WatchTimeoutError,
)

from .backend import Backend, Watch, WatchEvent, fetch_membership
from .entry import Change, Entries, Entry, expand_pattern, parse_patterns
from .registry import (
    create_backend,
    known_schemes,
    parse_discovery_url,
    parse_options,
    register_scheme,
)
from .sync import SyncBackend, SyncWatch

__all__ = [
    "Backend",
    "BackendError",
    "BackendResponseError",
    "BackendUnavailableError",
    "Change",
    "ClusterNotFoundError",
    "ConfigurationError",
    "DiscoveryError",
    "Entries",
    "Entry",
    "InvalidDurationError",
    "InvalidEntryError",
    "InvalidOptionError",
    "InvalidURLError",
    "SyncBackend",
    "SyncWatch",
    "UnsupportedOperationError",
    "UnsupportedSchemeError",
    "Watch",
    "WatchEvent",
    "WatchTimeoutError",
    "create_backend",
    "expand_pattern",
    "fetch_membership",
    "known_schemes",
    "parse_discovery_url",
    "parse_options",
    "parse_patterns",
    "register_scheme",
]
