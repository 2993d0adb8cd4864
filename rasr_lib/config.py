"""Typed, frozen configuration: every key has a one-line meaning; profiles layer on top."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True)
class DataConfig:
    """Which data and how it is cut."""

    dataset: str = "beauty"  # beauty | sports | toys | ml-1m
    max_len: int = 50  # keep the last max_len items of every input sequence
    max_users: int = 0  # 0 = all users; >0 = a real slice of the first max_users users


@dataclass(frozen=True)
class ModelConfig:
    """Backbone architecture (shared names across models)."""

    name: str = "sasrec"  # sasrec | gru4rec | sagerec
    hidden_dim: int = 64  # item embedding / hidden size d
    num_layers: int = 2  # transformer blocks or GRU layers
    num_heads: int = 2  # attention heads (SASRec)
    inner_dim: int = 256  # feed-forward width (SASRec) or GRU hidden size (GRU4Rec)
    dropout: float = 0.5  # dropout on embeddings and inside blocks
    activation: str = "gelu"  # feed-forward activation: gelu | relu
    layer_norm: str = "post"  # post (DR4SR code, torch default) | pre (SAGERec paper, pmixer)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and early stopping."""

    loss: str = "bce"  # bce: 1 sampled negative per position (DR4SR) | ce: softmax over all items (RecBole)
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 0.0  # Adam L2 penalty
    batch_size: int = 256  # training sequences per step
    epochs: int = 200  # upper bound on epochs
    patience: int = 20  # stop after this many epochs without a better validation metric
    valid_metric: str = "ndcg@20"  # metric that picks the best checkpoint
    eval_every: int = 1  # validate every this many epochs
    # Opt-in parts of SAGERec's recipe (§4.5, §5.3); the defaults keep the DR4SR loop unchanged.
    neg_exclude_history: bool = False  # BCE negatives are never items of the row itself
    emb_l2: float = 0.0  # lambda * ||item table||^2 added to the loss (SAGERec §4.5: 1e-5)
    lr_decay_patience: int = 0  # n > 0: lr *= lr_decay_factor after n validations with no gain
    lr_decay_factor: float = 0.1  # multiplier of that plateau decay (SAGERec §5.3: 0.1)
    lr_decay_on: str = "loss"  # plateau signal: loss (validation loss, SAGERec §5.3) | metric (valid_metric)


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation protocol; its name goes into every result."""

    protocol: str = "full"  # full: rank all items | sampled100: target vs 100 sampled negatives
    ks: tuple[int, ...] = (10, 20)  # cut-offs for Recall@k and NDCG@k
    mask_history: bool = True  # exclude the user's earlier items from the ranking
    n_negatives: int = 100  # negatives per user for the sampled protocol
    batch_size: int = 512  # users per evaluation batch (512 measured fastest on the 2-core CPU)


@dataclass(frozen=True)
class RegenConfig:
    """Which training data the backbone sees: the original, or original + RaSR / DR4SR regenerated."""

    method: str = "none"  # none: original data | rasr | dr4sr: add that method's regenerated sequences
    ratio: float = 1.0  # fraction of the regenerated sequences added to the original (RaSR Fig. 4)
    window: int = 2  # RaSR co-occurrence window (Eq. 3; Fig. 5)
    decay: float = 0.8  # RaSR temporal decay lambda (Eq. 3; Fig. 5)
    temporal_mode: str = "recency"  # recency | position (literal Eq. 3) | distance
    semantic_k: int = 20  # semantic neighbours per item in S (Eq. 4)
    semantic_aug: bool = True  # RaSR: make the 2 semantic variants (False = Fig. 3 "w/o semantic")
    relational_aug: bool = True  # RaSR: make the 2 relational variants (False = Fig. 3 "w/o relational")
    regenerator: bool = True  # False: add the augmented variants themselves (Fig. 3 "w/o regenerator")
    relation_aware: bool = True  # RaSR encoder E_r (Eqs. 5-7); False = DR4SR's plain encoder
    generator_epochs: int = 0  # 0 = the method's own (RaSR 100, DR4SR 40)
    generative_prob: float = -1.0  # decoding gamma; < 0 = the method's own (RaSR 1.0, DR4SR 0.1)
    pretrain: bool = True  # start the generator's item table from a SASRec trained on the original data
    max_pairs: int = 10  # DR4SR: (sequence -> pattern) pairs per sequence


@dataclass(frozen=True)
class SageRecConfig:
    """SAGERec's semantic item graph (§4.2-4.3) and its Table 5 ablations; read only by model sagerec."""

    top_k: int = 3  # semantic neighbours kept per item before symmetrising (§4.2: k = 3)
    tau: float = 0.0  # keep a neighbour only when cosine >= tau (§4.2; value not given, see graph.py)
    graph: str = "semantic"  # semantic | random (Table 5 D: same edge count) | none (Table 5 C: no graph)
    edge_learning: bool = True  # learned edge weights w_ij (§4.3); False = fixed cosine weights (Table 5 B)
    position: bool = True  # learned position embeddings; False = Table 5 E
    emb_scale: bool = True  # input item embeddings x sqrt(d), as SASRec's code (not in the paper)
    edge_dropout: float = 0.2  # share of undirected edges dropped per training step (§5.3)
    node_dropout: float = 0.5  # share of items whose outgoing messages are dropped per training step (§5.3)
    gcn_layers: int = 1  # propagation layers E <- E + A_hat E (§5.3: 1)
    adj_norm: str = "renorm"  # renorm: D^-1/2 (w A) D^-1/2 after re-weighting | scale: w (D^-1/2 A D^-1/2)


# ---- the backbone zoo (issue 5): one section per model, read only by that model and hashed only
# for it (see MODEL_SECTIONS), so adding a field never renames another model's runs.


@dataclass(frozen=True)
class FMLPRecConfig:
    """FMLP-Rec (Zhou et al., WWW 2022): filter-enhanced MLP; read only by model fmlprec."""


@dataclass(frozen=True)
class GCEGNNConfig:
    """GCE-GNN (Wang et al., SIGIR 2020) and DR4SR's GNN backbone; read by gcegnn and dr4sr_gnn."""


@dataclass(frozen=True)
class CL4SRecConfig:
    """CL4SRec (Xie et al., ICDE 2022): SASRec + contrastive views; read only by model cl4srec."""


@dataclass(frozen=True)
class BERT4RecConfig:
    """BERT4Rec (Sun et al., CIKM 2019): masked-item objective; read only by model bert4rec."""


@dataclass(frozen=True)
class CaserConfig:
    """Caser (Tang & Wang, WSDM 2018): convolutional sequence embedding; read only by model caser."""


@dataclass(frozen=True)
class S3RecConfig:
    """S3-Rec (Zhou et al., CIKM 2020): self-supervised pre-training; read only by model s3rec."""


@dataclass(frozen=True)
class DSSRecConfig:
    """DSSRec (Ma et al., NeurIPS 2020): disentangled seq2seq self-supervision; read only by dssrec."""


@dataclass(frozen=True)
class SINEConfig:
    """SINE (Tan et al., WSDM 2021): sparse-interest network; read only by model sine."""


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one run needs; its hash names the run folder."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    regen: RegenConfig = field(default_factory=RegenConfig)
    sagerec: SageRecConfig = field(default_factory=SageRecConfig)
    fmlprec: FMLPRecConfig = field(default_factory=FMLPRecConfig)
    gcegnn: GCEGNNConfig = field(default_factory=GCEGNNConfig)
    cl4srec: CL4SRecConfig = field(default_factory=CL4SRecConfig)
    bert4rec: BERT4RecConfig = field(default_factory=BERT4RecConfig)
    caser: CaserConfig = field(default_factory=CaserConfig)
    s3rec: S3RecConfig = field(default_factory=S3RecConfig)
    dssrec: DSSRecConfig = field(default_factory=DSSRecConfig)
    sine: SINEConfig = field(default_factory=SINEConfig)
    seed: int = 0  # the one seed that controls every random draw
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda
    profile: str = "full"  # name of the profile that produced this config


# Profiles: 'quick' runs in about a minute on a 2-core CPU on a real slice; 'full' is the paper's setting.
PROFILES: dict[str, dict[str, Any]] = {
    "full": {},
    "quick": {
        "data.max_users": 1000,
        "train.epochs": 2,
        "train.patience": 2,
        "regen.generator_epochs": 2,
    },
}

# Per-model defaults taken from DR4SR's configs (basemodel.yaml, sasrec.yaml, gru4rec.yaml).
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "sasrec": {"model.inner_dim": 128, "model.dropout": 0.5},
    "gru4rec": {"model.inner_dim": 256, "model.dropout": 0.2, "train.weight_decay": 1e-4},
    # SAGERec §5.3 (d = 50, 2 pre-LN blocks, ReLU FFN, batch 128, early stopping on N@10, L2 1e-5,
    # lr x0.1 after 5 epochs without improvement, negatives the user has not seen). Not in the
    # paper, chosen as in the SASRec paper: FFN width d, dropout 0.5 (sparse data), 2 heads.
    # ML-1M uses max_len 165 there: pass --set data.max_len=165.
    "sagerec": {
        "model.hidden_dim": 50, "model.num_layers": 2, "model.num_heads": 2, "model.inner_dim": 50,
        "model.dropout": 0.5, "model.activation": "relu", "model.layer_norm": "pre",
        "train.batch_size": 128, "train.valid_metric": "ndcg@10", "train.neg_exclude_history": True,
        "train.emb_l2": 1e-5, "train.lr_decay_patience": 5, "train.lr_decay_factor": 0.1,
        "train.lr_decay_on": "loss",
    },
}

# Model-specific config sections: a section enters the config hash only for the models listed.
MODEL_SECTIONS: dict[str, tuple[str, ...]] = {
    "sagerec": ("sagerec",),
    "fmlprec": ("fmlprec",),
    "gcegnn": ("gcegnn", "dr4sr_gnn"),
    "cl4srec": ("cl4srec",),
    "bert4rec": ("bert4rec",),
    "caser": ("caser",),
    "s3rec": ("s3rec",),
    "dssrec": ("dssrec",),
    "sine": ("sine",),
}

REGEN_METHODS = ("none", "rasr", "dr4sr")
SAGEREC_GRAPHS = ("semantic", "random", "none")
SAGEREC_NORMS = ("renorm", "scale")

# Keys added after results were published: left out of the hash while at their default, so
# every earlier run keeps its hash (and run folder).
HASH_IF_CHANGED: dict[str, tuple[str, ...]] = {
    "train": ("neg_exclude_history", "emb_l2", "lr_decay_patience", "lr_decay_factor", "lr_decay_on"),
}

DATASET_ALIASES = {
    "beauty": "beauty",
    "sports": "sports",
    "sports_and_outdoors": "sports",
    "toys": "toys",
    "toys_and_games": "toys",
    "ml-1m": "ml-1m",
    "ml1m": "ml-1m",
}


def apply_overrides(cfg: ExperimentConfig, overrides: dict[str, Any]) -> ExperimentConfig:
    """Return ``cfg`` with dotted-key overrides applied (``{"train.lr": 1e-3, "seed": 1}``)."""
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        if section:
            sub = getattr(cfg, section, None)
            if sub is None or not dataclasses.is_dataclass(sub):
                raise ValueError(f"unknown config section {section!r} in override {key!r}")
            if name not in {f.name for f in fields(sub)}:
                raise ValueError(f"unknown config key {key!r}")
            value = _coerce(getattr(sub, name), value, key)
            cfg = replace(cfg, **{section: replace(sub, **{name: value})})
        else:
            if name not in {f.name for f in fields(cfg)} or dataclasses.is_dataclass(getattr(cfg, name)):
                raise ValueError(f"unknown config key {key!r}")
            cfg = replace(cfg, **{name: _coerce(getattr(cfg, name), value, key)})
    return cfg


def _coerce(current: Any, value: Any, key: str) -> Any:
    """Cast a (possibly string) override to the type of the current value."""
    if isinstance(current, bool):
        if isinstance(value, str):
            return value.lower() in {"1", "true", "yes"}
        return bool(value)
    if isinstance(current, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        return tuple(type(current[0])(v) for v in value) if current else tuple(value)
    try:
        return type(current)(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"config key {key!r} expects {type(current).__name__}, got {value!r}") from err


def load_config(
    dataset: str = "beauty",
    profile: str = "quick",
    overrides: dict[str, Any] | None = None,
    model: str = "sasrec",
) -> ExperimentConfig:
    """Layer defaults, model defaults, the profile and explicit overrides (later wins)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
    name = DATASET_ALIASES.get(dataset.lower())
    if name is None:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {sorted(set(DATASET_ALIASES.values()))}")
    overrides = dict(overrides or {})
    model = overrides.pop("model.name", model)
    if model not in MODEL_DEFAULTS:
        raise ValueError(f"unknown model {model!r}; choose from {sorted(MODEL_DEFAULTS)}")
    cfg = ExperimentConfig(profile=profile)
    cfg = apply_overrides(cfg, {"data.dataset": name, "model.name": model})
    cfg = apply_overrides(cfg, MODEL_DEFAULTS[model])
    cfg = apply_overrides(cfg, PROFILES[profile])
    cfg = apply_overrides(cfg, overrides)
    if cfg.regen.method not in REGEN_METHODS:
        raise ValueError(f"unknown regen.method {cfg.regen.method!r}; choose from {REGEN_METHODS}")
    if not 0.0 <= cfg.regen.ratio <= 1.0:
        raise ValueError(f"regen.ratio must be in [0, 1], got {cfg.regen.ratio}")
    if cfg.train.lr_decay_on not in ("loss", "metric"):
        raise ValueError(f"train.lr_decay_on must be 'loss' or 'metric', got {cfg.train.lr_decay_on!r}")
    if cfg.sagerec.graph not in SAGEREC_GRAPHS:
        raise ValueError(f"unknown sagerec.graph {cfg.sagerec.graph!r}; choose from {SAGEREC_GRAPHS}")
    if cfg.sagerec.adj_norm not in SAGEREC_NORMS:
        raise ValueError(f"unknown sagerec.adj_norm {cfg.sagerec.adj_norm!r}; choose from {SAGEREC_NORMS}")
    return cfg


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """Plain nested dict of a config (JSON-serialisable)."""
    return dataclasses.asdict(cfg)


def config_hash(cfg: ExperimentConfig, length: int = 10) -> str:
    """Stable short hash of every setting that changes results (device excluded)."""
    payload = config_to_dict(cfg)
    payload.pop("device", None)
    if cfg.regen.method == "none":
        payload.pop("regen")  # runs on the original data keep the hash they had before regen existed
    for section, models in MODEL_SECTIONS.items():
        if cfg.model.name not in models:
            payload.pop(section)  # likewise: only a section's own models are named by it
    for section, names in HASH_IF_CHANGED.items():
        defaults = type(getattr(cfg, section))()
        for name in names:
            if payload[section][name] == getattr(defaults, name):
                payload[section].pop(name)
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
