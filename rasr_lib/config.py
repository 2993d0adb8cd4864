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
    semantic_graph: bool = False  # propagate the item table over SAGERec's semantic graph (§5.6; cfg.sagerec)


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
    lr_step_every: int = 0  # n > 0: lr *= lr_step_factor after every n epochs (GCE-GNN's code: StepLR, n = 3)
    lr_step_factor: float = 0.1  # multiplier of that step decay (GCE-GNN's code: 0.1)


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
    adj_norm: str = "renorm"  # renorm: D^-1/2 (w A) D^-1/2 after re-weighting (d_i d_j floored at 1e-12)
    # | renorm-exact: the same, free of w's overall scale | scale: w (D^-1/2 A D^-1/2)


# ---- the backbone zoo (issue 5): one section per model, read only by that model and hashed only
# for it (see MODEL_SECTIONS), so adding a field never renames another model's runs.


@dataclass(frozen=True)
class FMLPRecConfig:
    """FMLP-Rec (Zhou et al., WWW 2022): filter-enhanced MLP; read only by model fmlprec."""


@dataclass(frozen=True)
class GCEGNNConfig:
    """GCE-GNN (Wang et al., SIGIR 2020) and DR4SR's GNN backbone; read by gcegnn and dr4sr_gnn."""

    gcegnn_window: int = 2  # gcegnn: epsilon, items <= this many positions apart are global neighbours (§3.2)
    gcegnn_neighbors: int = 12  # gcegnn: top-frequency global neighbours kept per item (§5: 12)
    gcegnn_dropout_global: float = 0.5  # gcegnn: dropout on the global-level item representation (code default)
    gcegnn_dropout_local: float = 0.0  # gcegnn: dropout on the session-level item representation (code: 0)
    gcegnn_dropout_gcn: float = 0.0  # gcegnn: dropout inside the global aggregator (code: 0 Nowplaying)
    gcegnn_alpha: float = 0.2  # gcegnn: LeakyReLU slope of the session-graph attention (§4.2)
    gcegnn_chunk: int = 8192  # gcegnn: prefix positions per checkpointed chunk (memory bound only)
    gnn_layers: int = 2  # dr4sr_gnn: propagation layers, mean over layers 0..n (DR4SR gnn.yaml gnn_layer)
    gnn_window: int = 2  # dr4sr_gnn: transition pairs at distance 1..window, weight 1/distance (DR4SR)
    gnn_norm: str = "dr4sr"  # dr4sr_gnn: dr4sr = D^-1 A + A D^-1 (DR4SR code) | sym = D^-1/2 A D^-1/2


@dataclass(frozen=True)
class CL4SRecConfig:
    """CL4SRec (Xie et al., ICDE 2022): SASRec + contrastive views; read only by model cl4srec."""

    cl_weight: float = 0.1  # lambda, weight of the InfoNCE term added to the next-item loss (paper's multi-task loss; DR4SR cl4srec.yaml)
    temperature: float = 1.0  # tau of the InfoNCE softmax over inner products (DR4SR cl4srec.yaml: 1.0)
    crop_eta: float = 0.2  # item crop keeps max(1, floor(eta * n)) continuous items (DR4SR Item_Crop, Beauty: 0.2)
    mask_gamma: float = 0.7  # item mask replaces floor(gamma * n) items by [mask] (DR4SR Item_Mask, Beauty: 0.7)
    reorder_beta: float = 0.2  # item reorder shuffles floor(beta * n) continuous items (DR4SR Item_Reorder, Beauty: 0.2)
    pooling: str = "mean"  # view representation: mean of real states (DR4SR's code) | last (last real state)


@dataclass(frozen=True)
class BERT4RecConfig:
    """BERT4Rec (Sun et al., CIKM 2019): masked-item objective; read only by model bert4rec."""

    mask_ratio: float = 0.6  # rho: round(rho * n) >= 1 items of each training row are masked (§3.6; run_beauty.sh: 0.6)
    mask_last_prob: float = 0.1  # share of rows masking only their last item (authors' mask_last: 1 per 10 copies)
    attn_dropout: float = 0.2  # dropout on attention weights (bert_config_beauty_64.json; hidden dropout = model.dropout)


@dataclass(frozen=True)
class CaserConfig:
    """Caser (Tang & Wang, WSDM 2018): convolutional sequence embedding; read only by model caser."""

    L: int = 5  # window: the last L items form the L x d embedding "image" (§3.1; d = model.hidden_dim)
    n_v: int = 4  # vertical (L x 1) filters, point-level patterns (§3.2)
    n_h: int = 16  # horizontal filters of each height 1..L, union-level patterns (§3.2)
    ac_conv: str = "relu"  # phi_c, activation of the horizontal convolutions: relu | identity | tanh | sigmoid
    ac_fc: str = "identity"  # phi_a, activation of the fully-connected layer (paper: identity; authors' code: relu)
    neg_samples: int = 3  # BCE negatives per target (§3.4 / authors' code: 3): the loop's one + extra uniform draws


@dataclass(frozen=True)
class S3RecConfig:
    """S3-Rec (Zhou et al., CIKM 2020): self-supervised pre-training; read only by model s3rec."""

    mask_prob: float = 0.2  # share of items masked for MIP/MAP; the last item is always masked (§4.2, code)
    aap_weight: float = 0.2  # weight of associated attribute prediction (§5.1.3, authors' scripts)
    mip_weight: float = 1.0  # weight of masked item prediction (§5.1.3)
    map_weight: float = 1.0  # weight of masked attribute prediction (§5.1.3)
    sp_weight: float = 0.5  # weight of segment prediction (§5.1.3)
    pretrain_epochs: int = 10  # pre-training epochs before fine-tuning (paper 100; 10 for CPU time)
    quick_pretrain_epochs: int = 1  # profile "quick": this many epochs of pretrain_prefixes="sample" instead
    pretrain_batch_size: int = 256  # pre-training sequences per step (authors' code: 100)
    pretrain_lr: float = 1e-3  # Adam learning rate of pre-training (§5.1.3)
    pretrain_prefixes: str = "all"  # all: every prefix of every training sequence (code) | sample: 1 per sequence per epoch


@dataclass(frozen=True)
class DSSRecConfig:
    """DSSRec (Ma et al., KDD 2020): disentangled seq2seq self-supervision; read only by dssrec."""

    num_intents: int = 4  # K intention prototypes (§3.2; reproduction default 4)
    ss_weight: float = 1.0  # weight of the seq2seq latent loss added to the next-item loss (reproduction s2s_weight)
    select: str = "quantile"  # quantile: keep the lambda share of lowest-loss (sequence, intention) pairs | best: 1 per sequence
    keep_share: float = 0.5  # lambda of the quantile selection (reproduction default 0.5)


@dataclass(frozen=True)
class SINEConfig:
    """SINE (Tan et al., WSDM 2021): sparse-interest network; read only by model sine."""

    prototype_size: int = 50  # L: concept prototypes in the pool (Sec. 3.1; RecBole 50, paper 500)
    interest_size: int = 3  # K: concepts activated per sequence (Sec. 3.1; RecBole 3, paper 4)
    tau: float = 0.1  # temperature of the interest-aggregation softmax (Sec. 3.2; paper and RecBole)
    reg_weight: float = 0.1  # lambda on the prototypes' covariance regulariser (Sec. 3.3; paper 0.1)
    position: str = "recency"  # attention positions: recency (per-distance logit bias) | absolute (authors' code) | none (RecBole)


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
    # ML-1M uses max_len 165 there (DATASET_MODEL_DEFAULTS).
    "sagerec": {
        "model.hidden_dim": 50, "model.num_layers": 2, "model.num_heads": 2, "model.inner_dim": 50,
        "model.dropout": 0.5, "model.activation": "relu", "model.layer_norm": "pre",
        "train.batch_size": 128, "train.valid_metric": "ndcg@10", "train.neg_exclude_history": True,
        "train.emb_l2": 1e-5, "train.lr_decay_patience": 5, "train.lr_decay_factor": 0.1,
        "train.lr_decay_on": "loss",
    },
    # FMLP-Rec (authors' code, DR4SR fmlp.py): d = 64, 2 filter blocks, FFN 4d, GELU, dropout 0.5.
    # Rows are expanded into prefixes: 64 rows ~ 370 prefixes per step on Beauty (authors: 256).
    "fmlprec": {
        "model.hidden_dim": 64, "model.num_layers": 2, "model.inner_dim": 256, "model.dropout": 0.5,
        "model.activation": "gelu", "train.batch_size": 64,
    },
    # Caser (WSDM 2018 §4, authors' code): d = 50, dropout 0.5, Adam L2 1e-6 (sizes in cfg.caser).
    "caser": {"model.hidden_dim": 50, "model.dropout": 0.5, "train.weight_decay": 1e-6},
    # CL4SRec (DR4SR cl4srec.yaml): SASRec's encoder (FFN 128, dropout 0.5) + views (cfg.cl4srec).
    "cl4srec": {"model.inner_dim": 128, "model.dropout": 0.5},
    # BERT4Rec (authors' Beauty config): d = 64, 2 layers, 2 heads, FFN 256, hidden dropout 0.5,
    # GELU; cloze softmax loss. lr 1e-3 (authors 1e-4 over 400k steps, beyond our epoch budget).
    "bert4rec": {
        "model.hidden_dim": 64, "model.num_layers": 2, "model.num_heads": 2, "model.inner_dim": 256,
        "model.dropout": 0.5, "model.activation": "gelu", "train.loss": "ce",
    },
    # S3-Rec (authors' scripts): d = 64, 2 layers, 2 heads, FFN 4d, GELU, dropout 0.5; fine-tuning with
    # BCE and a negative outside the row's items. Pre-training settings in cfg.s3rec.
    "s3rec": {
        "model.hidden_dim": 64, "model.num_layers": 2, "model.num_heads": 2, "model.inner_dim": 256,
        "model.dropout": 0.5, "model.activation": "gelu", "train.loss": "bce",
        "train.neg_exclude_history": True,
    },
    # DSSRec (S3-Rec-style encoder of the public reproduction): d = 64, 2 layers, FFN 4d, dropout
    # 0.5; softmax next-item loss (the paper's seq2item is a softmax) + seq2seq term (cfg.dssrec).
    "dssrec": {
        "model.hidden_dim": 64, "model.num_layers": 2, "model.num_heads": 2, "model.inner_dim": 256,
        "model.dropout": 0.5, "model.activation": "gelu", "train.loss": "ce",
    },
    # GCE-GNN code defaults: CE over all items, Adam lr 1e-3, L2 1e-5 (dropouts in cfg.gcegnn);
    # d = 64 as every RaSR backbone (the paper's d = 100: --set model.hidden_dim=100).
    "gcegnn": {"model.hidden_dim": 64, "train.loss": "ce", "train.weight_decay": 1e-5},
    # DR4SR configs/gnn.yaml: its SASRec (2 layers, 2 heads, FFN 128, dropout 0.5, GELU), BCE.
    "dr4sr_gnn": {"model.inner_dim": 128, "model.dropout": 0.5},
    # BPR-MF (RecBole's BPR: d = 64, Adam lr 1e-3, no L2): "bce" = one sampled negative per
    # training interaction, which BPR-MF turns into its pairwise loss (rasr_lib/models/bpr.py).
    "bpr": {"model.hidden_dim": 64, "train.loss": "bce", "train.weight_decay": 0.0},
    # SINE (RecBole's defaults: d = 64, full-softmax CE; no dropout in the model); L, K, tau,
    # lambda in cfg.sine.
    "sine": {"model.hidden_dim": 64, "train.loss": "ce"},
}

# A model's recipe on one dataset where its paper departs from its default there: layered after
# MODEL_DEFAULTS, so such a run is the model's own recipe (no "-o" in its result name).
DATASET_MODEL_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("ml-1m", "sagerec"): {"data.max_len": 165},  # SAGERec §5.3 (50 on Beauty and Toys)
    # Caser's validation N@20 was still rising at the 200-epoch cap on Toys (best epochs 196-197,
    # seeds 0-2) and on ML-1M (best 198; .1236 at epoch 150, .1297 at 200); on Sports it stops early
    # at epochs 120-163 and on Beauty it is flat over its last 50. A capped run's checkpoint trains
    # on to the new cap (train_run.capped_checkpoint).
    ("toys", "caser"): {"train.epochs": 400},
    ("ml-1m", "caser"): {"train.epochs": 400},
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
SAGEREC_NORMS = ("renorm", "renorm-exact", "scale")

# Keys added after results were published: left out of the hash while at their default, so
# every earlier run keeps its hash (and run folder).
HASH_IF_CHANGED: dict[str, tuple[str, ...]] = {
    "model": ("semantic_graph",),
    "train": ("neg_exclude_history", "emb_l2", "lr_decay_patience", "lr_decay_factor", "lr_decay_on",
              "lr_step_every", "lr_step_factor"),
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
    cfg = apply_overrides(cfg, DATASET_MODEL_DEFAULTS.get((name, model), {}))
    cfg = apply_overrides(cfg, PROFILES[profile])
    cfg = apply_overrides(cfg, overrides)
    if cfg.regen.method not in REGEN_METHODS:
        raise ValueError(f"unknown regen.method {cfg.regen.method!r}; choose from {REGEN_METHODS}")
    if not 0.0 <= cfg.regen.ratio <= 1.0:
        raise ValueError(f"regen.ratio must be in [0, 1], got {cfg.regen.ratio}")
    if cfg.train.lr_decay_on not in ("loss", "metric"):
        raise ValueError(f"train.lr_decay_on must be 'loss' or 'metric', got {cfg.train.lr_decay_on!r}")
    if cfg.train.lr_step_every < 0 or not 0.0 < cfg.train.lr_step_factor <= 1.0:
        raise ValueError(f"train.lr_step_every must be >= 0 and train.lr_step_factor in (0, 1], got "
                         f"{cfg.train.lr_step_every} and {cfg.train.lr_step_factor}")
    positive = {"train.epochs": cfg.train.epochs, "train.batch_size": cfg.train.batch_size,
                "train.patience": cfg.train.patience, "train.eval_every": cfg.train.eval_every,
                "train.lr": cfg.train.lr, "data.max_len": cfg.data.max_len, "regen.window": cfg.regen.window,
                "regen.decay": cfg.regen.decay, "regen.semantic_k": cfg.regen.semantic_k,
                "eval.batch_size": cfg.eval.batch_size, "eval.n_negatives": cfg.eval.n_negatives}
    bad = [f"{key} = {value} (must be > 0)" for key, value in positive.items() if not value > 0]
    if not all(k > 0 for k in cfg.eval.ks):
        bad.append(f"eval.ks = {cfg.eval.ks} (each must be > 0)")
    if cfg.regen.generator_epochs < 0:
        bad.append(f"regen.generator_epochs = {cfg.regen.generator_epochs} (must be >= 0; 0 = the method's own)")
    if bad:
        raise ValueError("out of range: " + "; ".join(bad))
    if not (cfg.device in ("auto", "cpu") or cfg.device.startswith("cuda")):
        raise ValueError(f"unknown device {cfg.device!r}; choose from auto, cpu, cuda (or cuda:N)")
    if cfg.sagerec.graph not in SAGEREC_GRAPHS:
        raise ValueError(f"unknown sagerec.graph {cfg.sagerec.graph!r}; choose from {SAGEREC_GRAPHS}")
    if cfg.sagerec.adj_norm not in SAGEREC_NORMS:
        raise ValueError(f"unknown sagerec.adj_norm {cfg.sagerec.adj_norm!r}; choose from {SAGEREC_NORMS}")
    return cfg


def config_from_dict(recorded: dict[str, Any]) -> ExperimentConfig:
    """The :class:`ExperimentConfig` a result file recorded (``config_to_dict`` output); settings added
    since then take their defaults. Raises ``ValueError`` for a setting that no longer exists."""
    overrides = {}
    for key, value in recorded.items():
        if isinstance(value, dict):
            overrides.update({f"{key}.{k}": v for k, v in value.items() if f"{key}.{k}" != "model.name"})
        elif key != "profile":
            overrides[key] = value
    try:
        return load_config(recorded["data"]["dataset"], recorded.get("profile", "quick"), overrides,
                           model=recorded["model"]["name"])
    except (KeyError, TypeError) as err:
        raise ValueError(f"not a recorded experiment config: {err}") from None


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """Plain nested dict of a config (JSON-serialisable)."""
    return dataclasses.asdict(cfg)


def config_hash(cfg: ExperimentConfig, length: int = 10) -> str:
    """Stable short hash of every setting that changes results (device excluded): of :func:`hashed_settings`."""
    blob = json.dumps(hashed_settings(cfg), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def hashed_settings(cfg: ExperimentConfig) -> dict[str, Any]:
    """The nested settings that name a run: all but the device, settings of sections the run does not
    use (regeneration on the original data, other models' sections) and unchanged opt-in keys."""
    payload = config_to_dict(cfg)
    payload.pop("device", None)
    if cfg.regen.method == "none":
        payload.pop("regen")  # runs on the original data keep the hash they had before regen existed
    for section, models in MODEL_SECTIONS.items():
        if section == "sagerec" and cfg.model.semantic_graph:
            continue  # a backbone + SAGERec's graph module is named by the graph's settings too
        if cfg.model.name not in models:
            payload.pop(section)  # likewise: only a section's own models are named by it
    for section, names in HASH_IF_CHANGED.items():
        defaults = type(getattr(cfg, section))()
        for name in names:
            if payload[section][name] == getattr(defaults, name):
                payload[section].pop(name)
    return payload
