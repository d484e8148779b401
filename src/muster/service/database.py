"""The token service's SQLite file: its schema, loading it, and one batch write."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

ClusterRow = tuple[str, float, int]  # token, created_at, version
NodeRow = tuple[str, str, float, float, int]  # token, addr, last_seen, expires, ttl

FILE_NAME = "muster.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clusters (
    token TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nodes (
    token TEXT NOT NULL,
    addr TEXT NOT NULL,
    last_seen REAL NOT NULL,
    expires_at REAL NOT NULL,
    ttl_seconds INTEGER NOT NULL,
    PRIMARY KEY (token, addr)
) WITHOUT ROWID;
"""


@dataclass(slots=True)
class Batch:
    """Rows to write in one transaction, taken from memory at one instant."""

    clusters: list[ClusterRow] = field(default_factory=list)
    nodes: list[NodeRow] = field(default_factory=list)
    gone_nodes: list[tuple[str, str]] = field(default_factory=list)
    gone_clusters: list[tuple[str]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return (
            len(self.clusters)
            + len(self.nodes)
            + len(self.gone_nodes)
            + len(self.gone_clusters)
        )


def open_database(
    path: Path,
) -> tuple[sqlite3.Connection, list[ClusterRow], list[NodeRow]]:
    """Open (or make) the database and read every row; runs on the store's thread."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        # WAL lets a commit be one append; NORMAL skips the fsync per commit yet
        # keeps every commit through a process crash (only power loss can lose
        # the last ones), see https://www.sqlite.org/pragma.html#pragma_synchronous
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        clusters = db.execute("SELECT token, created_at, version FROM clusters")
        nodes = db.execute(
            "SELECT token, addr, last_seen, expires_at, ttl_seconds FROM nodes"
        )
        return db, clusters.fetchall(), nodes.fetchall()
    except BaseException:
        db.close()
        raise


def write_batch(db: sqlite3.Connection | None, batch: Batch) -> None:
    """Write one batch in one transaction; runs on the store's thread."""
    if db is None:
        raise sqlite3.ProgrammingError("the store is closed")
    db.execute("BEGIN")
    try:
        db.executemany(
            "INSERT INTO clusters (token, created_at, version) VALUES (?, ?, ?) "
            "ON CONFLICT (token) DO UPDATE SET version = excluded.version",
            batch.clusters,
        )
        db.executemany(
            "INSERT OR REPLACE INTO nodes "
            "(token, addr, last_seen, expires_at, ttl_seconds) VALUES (?, ?, ?, ?, ?)",
            batch.nodes,
        )
        db.executemany(
            "DELETE FROM nodes WHERE token = ? AND addr = ?", batch.gone_nodes
        )
        db.executemany("DELETE FROM nodes WHERE token = ?", batch.gone_clusters)
        db.executemany("DELETE FROM clusters WHERE token = ?", batch.gone_clusters)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # a failed COMMIT may have rolled back already
            db.execute("ROLLBACK")
        raise
