"""The one dataset type every loader returns: user sequences in CSR form plus item text."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SeqDataset:
    """Chronological user sequences; items are ``1..n_items`` and ``0`` is padding.

    The sequences are stored CSR-style so that slicing and statistics stay vectorised:
    user ``u`` (0-based row) owns ``items[offsets[u]:offsets[u + 1]]``.
    """

    name: str
    offsets: np.ndarray  # int64[n_users + 1]: row starts into ``items``
    items: np.ndarray  # int64[n_interactions]: item ids in 1..n_items, chronological per user
    n_items: int  # size of the catalogue (largest item id)
    item_text: list = field(default_factory=list)  # [n_items + 1] dicts (index 0 = None)
    source: str = ""  # where the data came from (file path or description)

    @classmethod
    def from_lists(cls, seqs: list, n_items: int | None = None, name: str = "toy") -> "SeqDataset":
        """A dataset from Python lists of item ids (tests, worked examples); n_items defaults to the max id."""
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        items = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs]) if seqs else np.zeros(0, np.int64)
        n_items = int(items.max(initial=0)) if n_items is None else n_items
        return cls(name=name, offsets=offsets, items=items, n_items=n_items)

    @property
    def n_users(self) -> int:
        """Number of users (sequences)."""
        return int(len(self.offsets) - 1)

    @property
    def n_interactions(self) -> int:
        """Total number of interactions."""
        return int(len(self.items))

    @property
    def lengths(self) -> np.ndarray:
        """Sequence length per user, int64[n_users]."""
        return np.diff(self.offsets)

    def sequence(self, user: int) -> np.ndarray:
        """Item ids of one user (0-based row), chronological."""
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def sequences(self) -> list[np.ndarray]:
        """All sequences as a list of arrays (views, no copy)."""
        return np.split(self.items, self.offsets[1:-1])

    def item_title(self, item: int) -> str:
        """Human-readable title of an item, or ``'item <id>'`` when no text is known."""
        meta = self.item_text[item] if 0 < item < len(self.item_text) else None
        if meta and meta.get("title"):
            return str(meta["title"])
        return f"item {item}"

    def stats(self) -> dict:
        """Table-2 statistics: users, items, interactions, average length, sparsity."""
        n_users, n_items, n_inter = self.n_users, self.n_items, self.n_interactions
        return {
            "dataset": self.name,
            "n_users": n_users,
            "n_items": n_items,
            "n_interactions": n_inter,
            "avg_len": round(n_inter / n_users, 2),
            "sparsity": round(1.0 - n_inter / (n_users * n_items), 4),
        }

    def subset_users(self, n_users: int) -> "SeqDataset":
        """A real slice: the first ``n_users`` users, items re-indexed to ``1..n`` in order of first use."""
        n_users = min(n_users, self.n_users)
        end = int(self.offsets[n_users])
        items = self.items[:end]
        # Re-index so the slice has a dense catalogue (full ranking stays meaningful).
        uniq, first = np.unique(items, return_index=True)
        order = uniq[np.argsort(first)]
        remap = np.zeros(self.n_items + 1, dtype=np.int64)
        remap[order] = np.arange(1, len(order) + 1)
        text = [None] + [self.item_text[i] for i in order] if self.item_text else []
        return SeqDataset(
            name=f"{self.name}[:{n_users}]",
            offsets=self.offsets[: n_users + 1].copy(),
            items=remap[items],
            n_items=len(order),
            item_text=text,
            source=self.source,
        )
