"""The OpenAPI 3.1 description of the token service, served at ``/openapi.json``.

Written by hand: the API is small and stable, and a hand-written document lets
each operation say how it relates to classic Swarm's hosted service.
"""

from __future__ import annotations

from typing import Any

_TOKEN = {
    "name": "token",
    "in": "path",
    "required": True,
    "description": "The cluster token returned by POST /v1/clusters.",
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
}
_INDEX_HEADER = {
    "X-Muster-Index": {
        "description": "The cluster's membership version; it grows whenever a "
        "node joins, leaves or expires (not when a node merely refreshes).",
        "schema": {"type": "integer", "minimum": 0},
    }
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
        },
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": _INDEX_HEADER,
        "content": {"application/json": {"schema": schema}},
    }


_BAD_TOKEN = _error("The token is not 32 lowercase hex characters.")
_NO_CLUSTER = _error("No cluster has this token.")

_CLUSTER_PATH = {
    "parameters": [_TOKEN],
    "post": {
        "summary": "Register a node, or refresh it, for one TTL (Swarm compatible)",
        "description": "The body is the node's address as host:port, sent raw as "
        "Swarm does (even when labelled application/json) or as a JSON string.",
        "parameters": [
            {
                "name": "ttl",
                "in": "query",
                "description": "Seconds the registration lasts; default 180.",
                "schema": {"type": "integer", "minimum": 1, "default": 180},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "text/plain": {"schema": {"type": "string", "maxLength": 1024}},
                "application/json": {"schema": {"type": "string"}},
            },
        },
        "responses": {
            "200": {"description": "Registered; empty body.", "headers": _INDEX_HEADER},
            "400": _error("Malformed token, ttl out of range, or not host:port."),
            "404": _NO_CLUSTER,
            "409": _error("The cluster already holds the most nodes allowed."),
            "413": _error("The body is larger than 1024 bytes."),
        },
    },
    "get": {
        "summary": "List the live members (Swarm compatible), optionally long-polling",
        "parameters": [
            {
                "name": "index",
                "in": "query",
                "description": "Answer only once the version differs from this one.",
                "schema": {"type": "integer", "minimum": 0},
            },
            {
                "name": "wait",
                "in": "query",
                "description": "How long to hold the request when index is given: "
                "a Go duration (30s, 1m30s) or whole seconds; default 60s, "
                "longer waits are cut to 600s.",
                "schema": {"type": "string"},
            },
        ],
        "responses": {
            "200": _json(
                "Members as host:port, IPv6 hosts in brackets, sorted.",
                {"type": "array", "items": {"type": "string"}},
            ),
            "400": _error("Malformed token, index or wait."),
            "404": _error("No cluster has this token, or it was deleted meanwhile."),
        },
    },
    "delete": {
        "summary": "Delete the cluster and all its nodes (Swarm compatible)",
        "responses": {
            "204": {"description": "Deleted."},
            "400": _BAD_TOKEN,
            "404": _NO_CLUSTER,
        },
    },
}

_NODE_SCHEMA = {
    "type": "object",
    "required": ["addr", "last_seen", "expires_at", "ttl_seconds"],
    "properties": {
        "addr": {"type": "string", "examples": ["10.0.0.1:2375"]},
        "last_seen": {"type": "string", "format": "date-time"},
        "expires_at": {"type": "string", "format": "date-time"},
        "ttl_seconds": {"type": "integer"},
    },
}


def openapi_document(version: str) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the service at ``version``."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "muster token discovery service",
            "version": version,
            "description": "Hosted cluster discovery, wire-compatible under /v1 "
            "with classic Docker Swarm's token service. Every error answers "
            'with a JSON body {"error": "..."}.',
        },
        "paths": {
            "/v1/clusters": {
                "post": {
                    "summary": "Create a cluster and return its token (Swarm "
                    "compatible)",
                    "description": "The request body, if any, is ignored.",
                    "responses": {
                        "200": {
                            "description": "The new token, 32 lowercase hex "
                            "characters, with no trailing newline.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/v1/clusters/{token}": _CLUSTER_PATH,
            "/v1/clusters/{token}/nodes": {
                "parameters": [_TOKEN],
                "get": {
                    "summary": "Describe every live node, with its expiry",
                    "responses": {
                        "200": _json(
                            "The version and the nodes, sorted by address; "
                            "times are RFC 3339 UTC with milliseconds.",
                            {
                                "type": "object",
                                "properties": {
                                    "index": {"type": "integer"},
                                    "nodes": {"type": "array", "items": _NODE_SCHEMA},
                                },
                            },
                        ),
                        "400": _BAD_TOKEN,
                        "404": _NO_CLUSTER,
                    },
                },
            },
            "/v1/clusters/{token}/{addr}": {
                "parameters": [
                    _TOKEN,
                    {
                        "name": "addr",
                        "in": "path",
                        "required": True,
                        "description": "host:port; an IPv6 host in brackets, "
                        "which may be percent-encoded.",
                        "schema": {"type": "string"},
                    },
                ],
                "delete": {
                    "summary": "Remove one node at once (a graceful leave)",
                    "responses": {
                        "204": {"description": "Removed.", "headers": _INDEX_HEADER},
                        "400": _error("Malformed token or address."),
                        "404": _error("No such cluster, or the node is not in it."),
                    },
                },
            },
            "/health": {
                "get": {
                    "summary": "Report that the service runs, with a few counts",
                    "responses": {"200": {"description": '{"status": "ok", ...}'}},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1 JSON."}},
                }
            },
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                }
            }
        },
    }
