"""Loaders for the bundled benchmark files: Amazon Beauty/Sports/Toys and MovieLens-1M.

Every loader returns a :class:`~rasr_lib.data.schema.SeqDataset`. The on-disk formats and
where each file comes from are described in ``data/README.md``:

- ``<DS>.txt.gz``: one line per user, ``user_id item_id item_id ...`` (chronological);
- ``<DS>_item_text.jsonl.gz``: one JSON object per item id (title, categories, ...);
- ``<DS>_item2attributes.json.gz``: ``{item_id: [attribute ids]}`` (brand + categories);
- ML-1M: ``ml-1m_full_chrono_original_ids.txt.gz`` (original MovieIDs, unfiltered) and
  ``movies.dat.gz`` (``MovieID::Title::Genres``, latin-1).

Malformed input raises :class:`DataError`, whose message names the file and the 1-based line.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rasr_lib.data.schema import SeqDataset
from rasr_lib.runtime import data_dir as default_data_dir

logger = logging.getLogger(__name__)


class DataError(ValueError):
    """A data file is missing or malformed; the message names the file and the line."""


@dataclass(frozen=True)
class DatasetSpec:
    """Where one benchmark lives under the data folder and the statistics it must have."""

    name: str  # canonical name, e.g. "beauty"
    folder: str  # sub-folder of the data folder
    sequence_file: str  # per-user sequences, "user_id item item ..."
    text_file: str  # item text: jsonl (Amazon) or movies.dat (ML-1M)
    attributes_file: str | None  # S3-Rec item2attributes json (Amazon only)
    kind: str  # "amazon" (ids already 1..n) or "movielens" (original ids, k-core + re-index)
    kcore: int  # iterative k-core applied by the loader (0 = none: file is already filtered)
    expected: tuple[int, int, int]  # (n_users, n_items, n_interactions) the loader must give
    paper: tuple[int, int, int]  # RaSR Table 2 (n_users, n_items, n_interactions)
    aliases: tuple[str, ...] = ()  # other accepted names (compared case-insensitively)


DATASETS: dict[str, DatasetSpec] = {
    "beauty": DatasetSpec(
        name="beauty",
        folder="beauty",
        sequence_file="Beauty.txt.gz",
        text_file="Beauty_item_text.jsonl.gz",
        attributes_file="Beauty_item2attributes.json.gz",
        kind="amazon",
        kcore=0,
        expected=(22_363, 12_101, 198_502),
        paper=(22_363, 12_101, 198_502),
        aliases=("amazon-beauty",),
    ),
    "sports": DatasetSpec(
        name="sports",
        folder="sports",
        sequence_file="Sports_and_Outdoors.txt.gz",
        text_file="Sports_and_Outdoors_item_text.jsonl.gz",
        attributes_file="Sports_and_Outdoors_item2attributes.json.gz",
        kind="amazon",
        kcore=0,
        expected=(35_598, 18_357, 296_337),
        paper=(35_598, 18_357, 296_337),
        aliases=("sports-and-outdoors", "amazon-sports"),
    ),
    "toys": DatasetSpec(
        name="toys",
        folder="toys",
        sequence_file="Toys_and_Games.txt.gz",
        text_file="Toys_and_Games_item_text.jsonl.gz",
        attributes_file="Toys_and_Games_item2attributes.json.gz",
        kind="amazon",
        kcore=0,
        expected=(19_412, 11_924, 167_597),
        paper=(19_412, 11_924, 167_597),
        aliases=("toys-and-games", "amazon-toys"),
    ),
    "ml-1m": DatasetSpec(
        name="ml-1m",
        folder="ml-1m",
        sequence_file="ml-1m_full_chrono_original_ids.txt.gz",
        text_file="movies.dat.gz",
        attributes_file=None,
        kind="movielens",
        kcore=5,
        expected=(6_040, 3_416, 999_611),
        # Paper values are the raw, unfiltered ML-1M counts; 3,952 is the largest MovieID
        # (only 3,706 movies are rated), see data/README.md.
        paper=(6_040, 3_952, 1_000_209),
        aliases=("ml1m", "movielens-1m", "movielens1m"),
    ),
}


def _normalise(name: str) -> str:
    """Lower-case a dataset name and unify separators (``_`` and spaces become ``-``)."""
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def resolve_name(name: str) -> str:
    """Canonical dataset name for ``name`` or one of its aliases (case-insensitive)."""
    key = _normalise(name)
    for spec in DATASETS.values():
        if key == spec.name or key in spec.aliases:
            return spec.name
    valid = ", ".join(sorted(DATASETS))
    raise DataError(f"unknown dataset {name!r}; valid names: {valid} (aliases accepted: "
                    + ", ".join(a for s in DATASETS.values() for a in s.aliases) + ")")


# --------------------------------------------------------------------------- file access


def _locate(folder: Path, filename: str) -> Path:
    """Path of ``filename`` in ``folder``, falling back to the uncompressed name; DataError if absent."""
    path = folder / filename
    if path.is_file():
        return path
    if filename.endswith(".gz") and (folder / filename[:-3]).is_file():
        return folder / filename[:-3]
    raise DataError(
        f"{filename}: data file not found at {path} (nor uncompressed). The data folder is "
        f"{folder.parent}; set the environment variable RASR_DATA_DIR to use another one."
    )


def _read_text(path: Path, encoding: str = "utf-8") -> str:
    """Whole file as text, gunzipped when the name ends in ``.gz``; DataError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path.name}: data file not found at {path}; the data folder can be set with "
            "the environment variable RASR_DATA_DIR."
        )
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding=encoding) as fh:
                return fh.read()
        return path.read_text(encoding=encoding)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{path.name}: cannot read file ({exc})") from exc


def _split_lines(text: str) -> list[str]:
    """Lines of ``text``; a single final newline does not create an extra (blank) line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


# --------------------------------------------------------------------------- sequences


def _first_bad_token(lines: list[str], fname: str) -> DataError:
    """DataError for the first token in ``lines`` that is not an integer (error path only)."""
    for lineno, line in enumerate(lines, start=1):
        for pos, tok in enumerate(line.split()):
            what = "user id" if pos == 0 else "item id"
            try:
                value = int(tok)
            except ValueError:
                return DataError(f"{fname} line {lineno}: token {tok!r} is not an integer {what}")
            if not -(2**63) <= value < 2**63:
                return DataError(f"{fname} line {lineno}: {what} {tok!r} does not fit in int64")
    return DataError(f"{fname}: could not parse integer tokens")  # pragma: no cover


def read_sequences(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse ``user item item ...`` lines: (offsets int64[U+1], items int64[N], user_ids int64[U])."""
    path = Path(path)
    fname = path.name
    lines = _split_lines(_read_text(path))
    tokens_per_line = [line.split() for line in lines]
    n_tok = np.fromiter((len(t) for t in tokens_per_line), dtype=np.int64, count=len(lines))
    if len(lines) == 0:
        raise DataError(f"{fname}: file is empty (no user sequences)")
    short = np.flatnonzero(n_tok < 2)
    if len(short):
        row = int(short[0])
        if n_tok[row] == 0:
            raise DataError(f"{fname} line {row + 1}: blank line (empty sequence, no user id or items)")
        user = tokens_per_line[row][0]
        raise DataError(f"{fname} line {row + 1}: user {user!r} has no items (empty sequence)")
    flat = [tok for toks in tokens_per_line for tok in toks]
    try:
        values = np.array(flat, dtype=np.int64)
    except (ValueError, OverflowError):
        raise _first_bad_token(lines, fname) from None
    # Token layout per line: [user, item, item, ...]; starts[r] indexes the user token of line r.
    starts = np.zeros(len(lines) + 1, dtype=np.int64)
    np.cumsum(n_tok, out=starts[1:])
    user_ids = values[starts[:-1]]
    is_item = np.ones(len(values), dtype=bool)
    is_item[starts[:-1]] = False
    items = values[is_item]
    offsets = np.zeros(len(lines) + 1, dtype=np.int64)
    np.cumsum(n_tok - 1, out=offsets[1:])
    bad = np.flatnonzero(items < 1)
    if len(bad):
        row = int(np.searchsorted(offsets, bad[0], side="right") - 1)
        raise DataError(
            f"{fname} line {row + 1}: item id {int(items[bad[0]])} is out of range (item ids start at 1)"
        )
    order = np.argsort(user_ids, kind="stable")
    dup = np.flatnonzero(user_ids[order][1:] == user_ids[order][:-1])
    if len(dup):
        # Report the earliest line that repeats a user id seen on an earlier line.
        second = order[dup + 1]
        row = int(second.min())
        first = int(np.flatnonzero(user_ids == user_ids[row])[0])
        raise DataError(
            f"{fname} line {row + 1}: duplicate user id {int(user_ids[row])} (first seen on line {first + 1})"
        )
    return offsets, items, user_ids


def check_contiguous(items: np.ndarray, fname: str) -> int:
    """Check that ``items`` int64[N] uses every id in 1..max; return max (the catalogue size)."""
    n_items = int(items.max()) if len(items) else 0
    present = np.zeros(n_items + 1, dtype=bool)
    present[items] = True
    missing = np.flatnonzero(~present[1:]) + 1
    if len(missing):
        raise DataError(
            f"{fname}: item ids are not contiguous 1..{n_items}: id {int(missing[0])} never occurs "
            f"({len(missing)} ids missing)"
        )
    return n_items


def kcore_filter(
    offsets: np.ndarray, items: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Iterative k-core (users, items >= k): (offsets int64[U'+1], items int64[N'], kept rows int64[U'])."""
    n_users = len(offsets) - 1
    user_of = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(offsets))
    keep = np.ones(len(items), dtype=bool)
    minlength = int(items.max()) + 1 if len(items) else 1
    rounds = 0
    while True:
        rounds += 1
        item_count = np.bincount(items[keep], minlength=minlength)
        user_count = np.bincount(user_of[keep], minlength=n_users)
        new_keep = keep & (item_count[items] >= k) & (user_count[user_of] >= k)
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    user_count = np.bincount(user_of[keep], minlength=n_users)
    kept_rows = np.flatnonzero(user_count > 0)
    new_offsets = np.zeros(len(kept_rows) + 1, dtype=np.int64)
    np.cumsum(user_count[kept_rows], out=new_offsets[1:])
    logger.debug("%d-core filter converged after %d rounds", k, rounds)
    return new_offsets, items[keep], kept_rows


def reindex_first_appearance(items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relabel items int64[N] to 1..n by first use: (new items int64[N], old id per new id int64[n+1])."""
    uniq, first = np.unique(items, return_index=True)
    order = uniq[np.argsort(first)]
    remap = np.zeros(int(items.max()) + 1, dtype=np.int64)
    remap[order] = np.arange(1, len(order) + 1)
    return remap[items], np.concatenate([[0], order]).astype(np.int64)


# --------------------------------------------------------------------------- item text


def read_item_text_jsonl(path: str | Path, n_items: int) -> list:
    """Item dicts from a ``{"item_id": i, ...}`` jsonl as a list of length n_items+1 (index 0 = None)."""
    path = Path(path)
    fname = path.name
    text: list = [None] * (n_items + 1)
    for lineno, line in enumerate(_split_lines(_read_text(path)), start=1):
        if not line.strip():
            raise DataError(f"{fname} line {lineno}: blank line (expected one JSON object per item)")
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{fname} line {lineno}: invalid JSON ({exc.msg})") from None
        item = row.get("item_id") if isinstance(row, dict) else None
        if not isinstance(item, int) or isinstance(item, bool):
            raise DataError(f"{fname} line {lineno}: missing or non-integer 'item_id'")
        if not 1 <= item <= n_items:
            raise DataError(f"{fname} line {lineno}: item_id {item} is out of range 1..{n_items}")
        if text[item] is not None:
            raise DataError(f"{fname} line {lineno}: duplicate item_id {item}")
        text[item] = row
    missing = [i for i in range(1, n_items + 1) if text[i] is None]
    if missing:
        raise DataError(f"{fname}: no text for {len(missing)} item ids, first missing id {missing[0]}")
    return text


def read_item_attributes(path: str | Path, n_items: int) -> list[list[int]]:
    """S3-Rec ``{item_id: [attribute ids]}`` as a list of length n_items+1 (index 0 = [])."""
    path = Path(path)
    try:
        raw = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path.name} line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path.name}: expected a JSON object {{item_id: [attribute ids]}}")
    attrs: list[list[int]] = [[] for _ in range(n_items + 1)]
    for key, values in raw.items():
        try:
            item = int(key)
        except ValueError:
            raise DataError(f"{path.name}: key {key!r} is not an integer item id") from None
        if not 1 <= item <= n_items:
            raise DataError(f"{path.name}: item id {item} is out of range 1..{n_items}")
        if not isinstance(values, list) or not all(isinstance(v, int) for v in values):
            raise DataError(f"{path.name}: attributes of item {item} are not a list of integers")
        attrs[item] = values
    return attrs


def read_movies(path: str | Path) -> dict[int, dict]:
    """ML-1M ``movies.dat`` (``MovieID::Title::Genres``, latin-1) as {movie_id: {title, genres, movie_id}}."""
    path = Path(path)
    fname = path.name
    movies: dict[int, dict] = {}
    for lineno, line in enumerate(_split_lines(_read_text(path, encoding="latin-1")), start=1):
        parts = line.rstrip("\r").split("::")
        if len(parts) != 3:
            raise DataError(
                f"{fname} line {lineno}: expected 'MovieID::Title::Genres', got {len(parts)} fields"
            )
        try:
            movie_id = int(parts[0])
        except ValueError:
            raise DataError(f"{fname} line {lineno}: token {parts[0]!r} is not an integer MovieID") from None
        if movie_id in movies:
            raise DataError(f"{fname} line {lineno}: duplicate MovieID {movie_id}")
        genres = [g for g in parts[2].split("|") if g]
        movies[movie_id] = {"title": parts[1], "genres": genres, "movie_id": movie_id}
    return movies


# --------------------------------------------------------------------------- datasets


def _load_amazon(spec: DatasetSpec, folder: Path) -> SeqDataset:
    """An Amazon 5-core benchmark: sequences (ids already 1..n), item text and attribute ids."""
    seq_path = _locate(folder, spec.sequence_file)
    offsets, items, _ = read_sequences(seq_path)
    n_items = check_contiguous(items, seq_path.name)
    text = read_item_text_jsonl(_locate(folder, spec.text_file), n_items)
    attrs = None
    if spec.attributes_file:
        attrs = read_item_attributes(_locate(folder, spec.attributes_file), n_items)
    for item in range(1, n_items + 1):
        meta = text[item]
        if meta.get("title"):
            meta["title_source"] = "amazon_title"
        elif meta.get("idgenrec_text"):
            # Sports has no raw titles: the IDGenRec phrase stands in (see data/README.md).
            meta["title"] = meta["idgenrec_text"]
            meta["title_source"] = "idgenrec_text"
        else:
            meta["title_source"] = "none"
        if meta.get("categories") is None:
            meta["categories"] = []
        meta["attributes"] = attrs[item] if attrs is not None else []
    return SeqDataset(name=spec.name, offsets=offsets, items=items, n_items=n_items,
                      item_text=text, source=str(seq_path))


def _load_movielens(spec: DatasetSpec, folder: Path) -> SeqDataset:
    """ML-1M: iterative k-core on the original-id sequences, items re-indexed by first appearance."""
    seq_path = _locate(folder, spec.sequence_file)
    offsets, items, _ = read_sequences(seq_path)
    raw_users, raw_inter = len(offsets) - 1, len(items)
    if spec.kcore > 0:
        offsets, items, _ = kcore_filter(offsets, items, spec.kcore)
    items, original = reindex_first_appearance(items)
    movies = read_movies(_locate(folder, spec.text_file))
    missing = [int(m) for m in original[1:] if int(m) not in movies]
    if missing:
        raise DataError(f"{spec.text_file}: no entry for MovieID {missing[0]} ({len(missing)} missing)")
    text = [None] + [dict(movies[int(m)]) for m in original[1:]]
    logger.info("%s: %d-core kept %d/%d users, %d/%d interactions",
                spec.name, spec.kcore, len(offsets) - 1, raw_users, len(items), raw_inter)
    return SeqDataset(name=spec.name, offsets=offsets, items=items, n_items=len(original) - 1,
                      item_text=text, source=str(seq_path))


def load_dataset(name: str, data_dir: str | Path | None = None, max_users: int = 0) -> SeqDataset:
    """Load a benchmark by name or alias (offsets int64[U+1], items int64[N]); max_users > 0 slices."""
    spec = DATASETS[resolve_name(name)]
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    folder = root / spec.folder
    tic = time.perf_counter()
    if spec.kind == "amazon":
        ds = _load_amazon(spec, folder)
    else:
        ds = _load_movielens(spec, folder)
    got = (ds.n_users, ds.n_items, ds.n_interactions)
    if got != spec.expected:
        logger.warning("%s: statistics %s differ from the expected %s", spec.name, got, spec.expected)
    logger.info("loaded %s from %s in %.2f s: %d users, %d items, %d interactions",
                spec.name, folder, time.perf_counter() - tic, *got)
    if max_users > 0:
        ds = ds.subset_users(max_users)
    return ds


def stats_table(
    names: tuple[str, ...] = ("beauty", "sports", "toys", "ml-1m"), data_dir: str | Path | None = None
) -> pd.DataFrame:
    """One row per dataset: SeqDataset.stats() plus RaSR Table 2 (paper_n_users/items/interactions)."""
    rows = []
    for name in names:
        spec = DATASETS[resolve_name(name)]
        row = load_dataset(spec.name, data_dir=data_dir).stats()
        row["paper_n_users"], row["paper_n_items"], row["paper_n_interactions"] = spec.paper
        rows.append(row)
    return pd.DataFrame(rows)
