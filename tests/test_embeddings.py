"""RaSR Eq. (2) inputs and outputs: item prompts and cached sentence-encoder embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from rasr_lib.data import load_dataset
from rasr_lib.data.schema import SeqDataset
from rasr_lib.rasr import embeddings
from rasr_lib.rasr.embeddings import EMBED_DIM, encode_items, item_prompt, item_prompts

BEAUTY_1 = ("Title: OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce. "
            "Categories: Beauty > Makeup > Nails > Nail Polish.")
# GRAM keywords of Sports item 3: cleaning mat mat tek fascinating accompanied depict 8
# (repeat dropped, numeric 8th id suffix stripped).
SPORTS_3 = "Title: gun mats tekmats hand. Keywords: cleaning, mat, tek, fascinating, accompanied, depict."
ML1M_2 = "Title: Back to the Future (1985). Genres: Comedy, Sci-Fi."


@pytest.fixture(scope="module")
def beauty():
    return load_dataset("beauty")


def test_prompts_of_real_items(beauty):
    assert item_prompt(beauty.item_text[1], "beauty") == BEAUTY_1
    sports = load_dataset("sports")
    assert item_prompt(sports.item_text[3], "sports") == SPORTS_3
    ml1m = load_dataset("ml-1m")
    assert ml1m.item_text[2]["movie_id"] == 1270
    assert item_prompt(ml1m.item_text[2], "ml-1m") == ML1M_2


def test_prompt_edge_cases():
    paths = [["Toys & Games", "Games"], ["Toys & Games", "Games"]]
    meta = {"title": "Melissa &amp; Doug  Kit.", "categories": paths}
    assert item_prompt(meta, "toys") == "Title: Melissa & Doug Kit. Categories: Toys & Games > Games."
    placeholder = {"title": "title_1664", "idgenrec_text": "Final Fantasy vii", "categories": []}
    assert item_prompt(placeholder, "toys[:100]") == "Title: Final Fantasy vii."
    assert item_prompt(None, "beauty") == ""
    seven = ["air", "soft", "5000", "gaming", "orange", "144", "12"]  # a 7th numeric keyword stays
    assert item_prompt({"title": "x", "gram_keywords": seven}, "sports") == (
        "Title: x. Keywords: air, soft, 5000, gaming, orange, 144, 12.")


def test_item_prompts_of_a_slice(beauty):
    ds = beauty.subset_users(3)
    prompts = item_prompts(ds)
    assert len(prompts) == ds.n_items + 1
    assert prompts[0] == ""
    assert all(p.startswith("Title: ") for p in prompts[1:])


def five_items(beauty) -> SeqDataset:
    """A 5-item dataset with the text of Beauty items 1, 2, 3, 176 and 3802."""
    text = [None] + [dict(beauty.item_text[i]) for i in (1, 2, 3, 176, 3802)]
    return SeqDataset(name="beauty-five", offsets=np.array([0, 5]), items=np.arange(1, 6),
                      n_items=5, item_text=text)


def test_encode_and_cache(beauty, tmp_path, monkeypatch):
    ds = five_items(beauty)
    emb = encode_items(ds, batch_size=4, cache_dir=tmp_path, progress=False, device="cpu")
    assert emb.shape == (6, EMBED_DIM) and emb.dtype == np.float32
    np.testing.assert_array_equal(emb[0], 0)
    np.testing.assert_allclose(np.linalg.norm(emb[1:], axis=1), 1.0, atol=1e-5)
    cos = emb @ emb.T
    # 4 and 5: "Clarisonic Mia Sonic Skin Cleansing System - Blue / - White";
    # 1 and 2: two OPI nail polishes; 3: a BB cream.
    assert cos[4, 5] > max(cos[4, 1], cos[4, 2], cos[4, 3], cos[5, 1], cos[5, 3])
    assert cos[1, 2] > max(cos[1, 3], cos[1, 4], cos[2, 3])
    assert len(list(tmp_path.glob("*.npy"))) == 1

    def no_model(*args, **kwargs):
        raise AssertionError("the encoder must not be loaded on a cache hit")

    monkeypatch.setattr(embeddings, "_load_encoder", no_model)
    again = encode_items(ds, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again, emb)
    # Changed text gets its own cache file (and would need the encoder).
    changed = SeqDataset(name=ds.name, offsets=ds.offsets, items=ds.items, n_items=5,
                         item_text=[None] + ds.item_text[2:] + [ds.item_text[1]])
    with pytest.raises(AssertionError, match="must not be loaded"):
        encode_items(changed, cache_dir=tmp_path, progress=False)
