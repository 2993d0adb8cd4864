"""Loaders on the bundled real data (Table 2 numbers) and on tiny malformed files."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from rasr_lib.data import DATASETS, DataError, load_dataset, read_sequences, stats_table
from rasr_lib.data.loaders import resolve_name
from rasr_lib.runtime import REPO_ROOT

DATA = REPO_ROOT / "data"


@pytest.fixture(scope="module")
def full():
    """Every bundled dataset loaded once for the module: {name: SeqDataset}."""
    return {name: load_dataset(name, data_dir=DATA) for name in DATASETS}


# ----------------------------------------------------------------------------- real data


@pytest.mark.parametrize(
    "name, users, items, inter, avg_len",
    [
        ("beauty", 22_363, 12_101, 198_502, 8.88),
        ("sports", 35_598, 18_357, 296_337, 8.32),
        ("toys", 19_412, 11_924, 167_597, 8.63),
        ("ml-1m", 6_040, 3_416, 999_611, 165.5),
    ],
)
def test_table2_statistics(full, name, users, items, inter, avg_len):
    s = full[name].stats()
    assert (s["n_users"], s["n_items"], s["n_interactions"]) == (users, items, inter)
    assert s["avg_len"] == avg_len
    assert full[name].items.min() == 1
    assert full[name].items.max() == items
    assert len(np.unique(full[name].items)) == items


def test_ml1m_keeps_original_movie_ids_and_titles(full):
    ds = full["ml-1m"]
    # First line of the chrono file: user 1's first movie is 3186 = Girl, Interrupted (1999).
    assert ds.item_text[1] == {"title": "Girl, Interrupted (1999)", "genres": ["Drama"], "movie_id": 3186}
    movie_ids = [t["movie_id"] for t in ds.item_text[1:]]
    assert len(set(movie_ids)) == 3_416
    assert ds.lengths.min() == 18


@pytest.mark.parametrize("name", ["beauty", "toys"])
def test_amazon_titles_for_every_item(full, name):
    ds = full[name]
    assert len(ds.item_text) == ds.n_items + 1
    assert ds.item_text[0] is None
    assert all(isinstance(t["title"], str) and t["title"].strip() for t in ds.item_text[1:])
    assert all(t["title_source"] == "amazon_title" for t in ds.item_text[1:])
    assert [t["item_id"] for t in ds.item_text[1:]] == list(range(1, ds.n_items + 1))
    assert all(isinstance(t["categories"], list) for t in ds.item_text[1:])


def test_sports_title_is_idgenrec_phrase(full):
    ds = full["sports"]
    assert len(ds.item_text) == ds.n_items + 1
    assert all(t["title"] == t["idgenrec_text"] and t["title"].strip() for t in ds.item_text[1:])
    assert all(t["title_source"] == "idgenrec_text" for t in ds.item_text[1:])
    # 7 GRAM keywords; 1,242 items whose 7 keywords collide carry an 8th, numeric token.
    lengths = [len(t["gram_keywords"]) for t in ds.item_text[1:]]
    assert (lengths.count(7), lengths.count(8)) == (17_115, 1_242)
    assert all(t["gram_keywords"][7].isdigit() for t in ds.item_text[1:] if len(t["gram_keywords"]) == 8)
    assert ds.item_text[1]["title"] == "ghost armorers tool 332 punch hunting fishing"
    assert ds.item_text[1]["categories"] == []


@pytest.mark.parametrize("name, n_with_attrs", [("beauty", 12_101), ("sports", 18_357), ("toys", 11_924)])
def test_attributes_attached(full, name, n_with_attrs):
    ds = full[name]
    assert sum(1 for t in ds.item_text[1:] if t["attributes"]) == n_with_attrs
    if name == "beauty":
        # Beauty_item2attributes.json starts with {"4": [1, 2, 3], "83": [4, 5, 6], ...}.
        assert ds.item_text[4]["attributes"] == [1, 2, 3]
        assert ds.item_text[83]["attributes"] == [4, 5, 6]


def test_first_sequences_match_file(full):
    # Beauty.txt starts "1 1 2 3 4 5" / "2 6 7 8 9 10 4 11".
    assert full["beauty"].sequence(0).tolist() == [1, 2, 3, 4, 5]
    assert full["beauty"].sequence(1).tolist() == [6, 7, 8, 9, 10, 4, 11]


@pytest.mark.parametrize("alias, canonical", [
    ("Sports_and_Outdoors", "sports"), ("TOYS_AND_GAMES", "toys"), ("ml1m", "ml-1m"), ("ML_1M", "ml-1m"),
    ("Beauty", "beauty"), (" sports ", "sports"),
])
def test_alias_resolves(alias, canonical):
    assert resolve_name(alias) == canonical


def test_alias_loads(full):
    ds = load_dataset("Toys_and_Games", data_dir=DATA, max_users=10)
    assert ds.name == "toys[:10]"
    assert ds.n_interactions == int(full["toys"].offsets[10])


def test_unknown_name_lists_valid_names():
    with pytest.raises(DataError, match=r"unknown dataset 'yelp'.*beauty, ml-1m, sports, toys"):
        load_dataset("yelp")


def test_max_users_slice(full):
    ds = load_dataset("beauty", data_dir=DATA, max_users=100)
    assert ds.n_users == 100
    assert ds.n_interactions == int(full["beauty"].offsets[100])
    assert sorted(np.unique(ds.items).tolist()) == list(range(1, ds.n_items + 1))
    assert len(ds.item_text) == ds.n_items + 1
    first = int(full["beauty"].sequence(0)[0])
    assert ds.item_text[1]["title"] == full["beauty"].item_text[first]["title"]
    # Every slice item still points at its own text: compare titles position by position.
    orig = full["beauty"].items[: ds.n_interactions]
    assert [ds.item_text[i]["item_id"] for i in ds.items.tolist()] == orig.tolist()


def test_stats_table_has_paper_columns(full):
    table = stats_table(names=("toys", "ml1m"), data_dir=DATA)
    assert table["dataset"].tolist() == ["toys", "ml-1m"]
    assert table[["n_users", "n_items", "n_interactions"]].values.tolist() == [
        [19_412, 11_924, 167_597], [6_040, 3_416, 999_611]]
    assert table[["paper_n_users", "paper_n_items", "paper_n_interactions"]].values.tolist() == [
        [19_412, 11_924, 167_597], [6_040, 3_952, 1_000_209]]
    assert list(table.columns) == ["dataset", "n_users", "n_items", "n_interactions", "avg_len", "sparsity",
                                   "paper_n_users", "paper_n_items", "paper_n_interactions"]


def test_checksums():
    lines = (DATA / "checksums.sha256").read_text().splitlines()
    listed = {line.split()[1] for line in lines}
    shipped = {p.relative_to(DATA).as_posix() for p in DATA.rglob("*.gz")}
    assert listed == shipped
    assert len(listed) == 11
    for line in lines:
        digest, rel = line.split()
        assert hashlib.sha256((DATA / rel).read_bytes()).hexdigest() == digest, rel


# ----------------------------------------------------------------------------- bad input


def _write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` (gzip when the name ends in .gz) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def test_read_sequences_plain_and_gzip(tmp_path):
    for name in ("s.txt", "s.txt.gz"):
        offsets, items, users = read_sequences(_write(tmp_path / name, "7 1 2 3\n3 2 4\n"))
        assert offsets.tolist() == [0, 3, 5]
        assert items.tolist() == [1, 2, 3, 2, 4]
        assert users.tolist() == [7, 3]


def test_non_integer_token(tmp_path):
    path = _write(tmp_path / "Beauty.txt.gz", "1 1 2\n2 2 3\n3 4 x3 5\n")
    with pytest.raises(DataError, match=r"^Beauty\.txt\.gz line 3: token 'x3' is not an integer item id$"):
        read_sequences(path)


def test_non_integer_user(tmp_path):
    path = _write(tmp_path / "seq.txt", "1 1 2\nu2 2 3\n")
    with pytest.raises(DataError, match=r"seq\.txt line 2: token 'u2' is not an integer user id"):
        read_sequences(path)


def test_empty_sequence(tmp_path):
    path = _write(tmp_path / "seq.txt", "1 1 2\n2 3\n3\n4 5\n")
    with pytest.raises(DataError, match=r"seq\.txt line 3: user '3' has no items \(empty sequence\)"):
        read_sequences(path)


def test_blank_line(tmp_path):
    path = _write(tmp_path / "seq.txt", "1 1 2\n\n2 3\n")
    with pytest.raises(DataError, match=r"seq\.txt line 2: blank line"):
        read_sequences(path)


def test_trailing_blank_lines(tmp_path):
    # One final newline is fine; a second one is a blank line 3.
    assert read_sequences(_write(tmp_path / "ok.txt", "1 1\n2 1\n"))[0].tolist() == [0, 1, 2]
    with pytest.raises(DataError, match=r"bad\.txt line 3: blank line"):
        read_sequences(_write(tmp_path / "bad.txt", "1 1\n2 1\n\n"))


def test_item_id_out_of_range(tmp_path):
    path = _write(tmp_path / "seq.txt.gz", "1 1 2\n2 2 3\n3 3 0 1\n")
    with pytest.raises(DataError, match=r"seq\.txt\.gz line 3: item id 0 is out of range"):
        read_sequences(path)


def test_negative_item_id(tmp_path):
    path = _write(tmp_path / "seq.txt", "1 1 2\n2 -4 3\n")
    with pytest.raises(DataError, match=r"seq\.txt line 2: item id -4 is out of range"):
        read_sequences(path)


def test_duplicate_user(tmp_path):
    path = _write(tmp_path / "seq.txt", "1 1 2\n2 2 3\n3 1\n2 4\n1 5\n")
    with pytest.raises(DataError, match=r"seq\.txt line 4: duplicate user id 2 \(first seen on line 2\)"):
        read_sequences(path)


def test_missing_file_names_path_and_env_var(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("beauty", data_dir=tmp_path)
    msg = str(err.value)
    assert "Beauty.txt.gz" in msg
    assert str(tmp_path / "beauty" / "Beauty.txt.gz") in msg
    assert "RASR_DATA_DIR" in msg


def test_missing_file_read_sequences(tmp_path):
    with pytest.raises(DataError, match=r"nope\.txt: data file not found .*RASR_DATA_DIR"):
        read_sequences(tmp_path / "nope.txt")


def test_non_contiguous_amazon_items(tmp_path):
    _write(tmp_path / "toys" / "Toys_and_Games.txt.gz", "1 1 2 4\n2 2 6 1\n")
    msg = r"Toys_and_Games\.txt\.gz: item ids are not contiguous 1\.\.6: id 3 never occurs"
    with pytest.raises(DataError, match=msg):
        load_dataset("Toys_and_Games", data_dir=tmp_path)


def test_item_text_bad_json(tmp_path):
    folder = tmp_path / "beauty"
    _write(folder / "Beauty.txt.gz", "1 1 2\n2 2 1\n")
    _write(folder / "Beauty_item_text.jsonl.gz",
           json.dumps({"item_id": 1, "title": "a"}) + "\n{not json\n")
    with pytest.raises(DataError, match=r"Beauty_item_text\.jsonl\.gz line 2: invalid JSON"):
        load_dataset("beauty", data_dir=tmp_path)


def test_item_text_missing_item(tmp_path):
    folder = tmp_path / "beauty"
    _write(folder / "Beauty.txt.gz", "1 1 2\n2 2 1\n")
    _write(folder / "Beauty_item_text.jsonl.gz", json.dumps({"item_id": 2, "title": "b"}) + "\n")
    msg = r"Beauty_item_text\.jsonl\.gz: no text for 1 item ids, first missing id 1"
    with pytest.raises(DataError, match=msg):
        load_dataset("beauty", data_dir=tmp_path)


def test_tiny_amazon_dataset_end_to_end(tmp_path):
    folder = tmp_path / "sports"
    _write(folder / "Sports_and_Outdoors.txt.gz", "1 1 2 3\n2 3 2\n")
    _write(folder / "Sports_and_Outdoors_item_text.jsonl.gz", "".join(
        json.dumps({"item_id": i, "title": None, "idgenrec_text": f"phrase {i}", "gram_keywords": ["k"]})
        + "\n"
        for i in (3, 1, 2)))
    _write(folder / "Sports_and_Outdoors_item2attributes.json.gz", json.dumps({"1": [5, 6], "3": [7]}))
    ds = load_dataset("sports", data_dir=tmp_path)
    assert ds.offsets.tolist() == [0, 3, 5]
    assert [ds.item_title(i) for i in (1, 2, 3)] == ["phrase 1", "phrase 2", "phrase 3"]
    assert [ds.item_text[i]["attributes"] for i in (1, 2, 3)] == [[5, 6], [], [7]]


def test_ml1m_kcore_and_reindex(tmp_path):
    # Round 1 drops movies 40 (3 ratings) and 60 (4); user 6 is left with [70] and goes in
    # round 2, which takes movie 70 down to 4 ratings, so it goes in round 3. Users 1-5 keep 5.
    lines = [
        "1 70 50 10 20 30 80",
        "2 50 10 20 30 70 80",
        "3 10 50 20 30 60 70 80",
        "4 20 10 30 50 60 70 80",
        "5 80 30 20 10 50 60",
        "6 40 40 40 60 70",
    ]
    folder = tmp_path / "ml-1m"
    _write(folder / "ml-1m_full_chrono_original_ids.txt.gz", "\n".join(lines) + "\n")
    movies = "".join(f"{m}::Movie {m} (2000)::Drama|Comedy\n" for m in (10, 20, 30, 40, 50, 60, 70, 80))
    (folder / "movies.dat.gz").write_bytes(gzip.compress(movies.encode("latin-1")))
    ds = load_dataset("ml-1m", data_dir=tmp_path)
    # Ids by first appearance (user 1 first): 50->1, 10->2, 20->3, 30->4, 80->5.
    assert ds.n_users == 5
    assert [t["movie_id"] for t in ds.item_text[1:]] == [50, 10, 20, 30, 80]
    assert [s.tolist() for s in ds.sequences()] == [
        [1, 2, 3, 4, 5], [1, 2, 3, 4, 5], [2, 1, 3, 4, 5], [3, 2, 4, 1, 5], [5, 4, 3, 2, 1]]
    assert ds.item_text[2] == {"title": "Movie 10 (2000)", "genres": ["Drama", "Comedy"], "movie_id": 10}
