"""The hosted token discovery service behind ``muster serve``."""

from .app import INDEX_HEADER, build_app
from .openapi import openapi_document
from .server import ServiceConfig, ServiceStartError, run
from .store import (
    ClusterFullError,
    Membership,
    NodeInfo,
    StorageError,
    Store,
    StoreError,
    UnknownClusterError,
    UnknownNodeError,
)

__all__ = [
    "INDEX_HEADER",
    "ClusterFullError",
    "Membership",
    "NodeInfo",
    "ServiceConfig",
    "ServiceStartError",
    "StorageError",
    "Store",
    "StoreError",
    "UnknownClusterError",
    "UnknownNodeError",
    "build_app",
    "openapi_document",
    "run",
]
