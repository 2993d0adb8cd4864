"""RaSR's relation-aware regenerator (Eqs. 5-8), DR4SR's hybrid decoding, merging and provenance."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from rasr_lib.data.schema import SeqDataset
from rasr_lib.data.split import leave_one_out
from rasr_lib.rasr.augment import AugmentConfig, augment_dataset, training_parts
from rasr_lib.rasr.generator import (
    GeneratorConfig,
    SequenceGenerator,
    as_ragged,
    cosine_lr,
    fit_generator,
    generator_config,
    rasr_pairs,
    relation_neighbours,
)
from rasr_lib.rasr.graphs import GraphConfig, build_relation_graph
from rasr_lib.rasr.regenerate import (
    RegeneratedSet,
    copy_prefix,
    extend_split,
    filter_outputs,
    greedy_decode,
    load_regenerated,
    merge_with_original,
    regenerate,
    regeneration_sources,
    save_regenerated,
    training_rows,
)

N_ITEMS = 20
CPU = torch.device("cpu")
TINY = dict(hidden_dim=16, inner_dim=32, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
            max_len=10, decode_max_len=8)


def make_ds(seqs, n_items=N_ITEMS) -> SeqDataset:
    """A SeqDataset from a list of Python lists."""
    return SeqDataset.from_lists(seqs, n_items)


def toy_data(n_users=12, seed=0):
    """Random sequences of 5..9 distinct items, their graph and 12-d semantic vectors."""
    rng = np.random.default_rng(seed)
    seqs = [rng.choice(np.arange(1, N_ITEMS + 1), size=int(rng.integers(5, 10)), replace=False)
            for _ in range(n_users)]
    ds = make_ds(seqs)
    emb = rng.standard_normal((N_ITEMS + 1, 12)).astype(np.float32)
    emb[0] = 0
    graph = build_relation_graph(ds, emb, GraphConfig(semantic_k=4))
    return ds, graph, emb


@pytest.fixture(scope="module")
def toy():
    return toy_data()


def tiny_model(toy, seed=0, **overrides) -> SequenceGenerator:
    """A 1+1-layer d=16 generator over the toy catalogue."""
    _, graph, emb = toy
    torch.manual_seed(seed)
    cfg = GeneratorConfig(**{**TINY, **overrides})
    return SequenceGenerator(N_ITEMS, cfg, graph, emb)


# --------------------------------------------------------------------------- model


def test_relation_neighbours_hand_computed():
    """Top-2 per row by weight, self excluded, ties to the smaller id, rows normalised."""
    rows = [1, 1, 1, 2, 2]
    cols = [1, 2, 3, 1, 3]
    vals = [5.0, 3.0, 1.0, 2.0, 2.0]
    mat = sp.csr_matrix((vals, (rows, cols)), shape=(4, 4), dtype=np.float32)
    index, weight = relation_neighbours(mat, k=2, n_rows=6)
    assert index.tolist() == [[0, 0], [2, 3], [1, 3], [0, 0], [0, 0], [0, 0]]
    assert weight.tolist() == [[0, 0], [0.75, 0.25], [0.5, 0.5], [0, 0], [0, 0], [0, 0]]


def test_teacher_forcing_inputs_and_targets(toy):
    model = tiny_model(toy, max_len=3, decode_max_len=4)
    sos, eos = N_ITEMS + 1, N_ITEMS + 2
    tgt = torch.tensor([[3, 2, 1, 7, 0], [9, 8, 0, 0, 0]])
    tgt_in, tgt_out = model.teacher_forcing(tgt)  # cut after max_len = 3 inputs
    assert tgt_in.tolist() == [[sos, 3, 2, 1], [sos, 9, 8, 0]]
    assert tgt_out.tolist() == [[3, 2, 1, 7], [9, 8, eos, 0]]
    tgt_in, tgt_out = tiny_model(toy).teacher_forcing(tgt)
    assert tgt_in.tolist() == [[sos, 3, 2, 1, 7, 0], [sos, 9, 8, 0, 0, 0]]
    assert tgt_out.tolist() == [[3, 2, 1, 7, eos, 0], [9, 8, eos, 0, 0, 0]]


@pytest.mark.parametrize("relation_aware", [True, False])
@pytest.mark.parametrize("n_memories", [1, 5])
def test_forward_and_loss_shapes(toy, relation_aware, n_memories):
    model = tiny_model(toy, relation_aware=relation_aware, n_memories=n_memories)
    src = torch.tensor([[1, 2, 3, 0], [4, 5, 6, 7]])
    tgt = torch.tensor([[3, 2, 9, 0, 0], [4, 11, 6, 7, 5]])
    tgt_in, _ = model.teacher_forcing(tgt)
    assert tuple(model(src, tgt_in).shape) == (2, 6, N_ITEMS + 3)
    assert tuple(model(src, tgt_in, memory_index=torch.tensor([0, 1])).shape) == (2, 6, N_ITEMS + 3)
    ce, entropy = model.loss(src, tgt)
    assert ce.shape == () and entropy.shape == ()
    assert 2.0 < ce.item() < 5.0  # about log(23) = 3.1 at initialisation
    if n_memories == 1:
        assert entropy.item() == 0.0
    else:
        assert 0.0 < entropy.item() <= np.log(5) + 1e-6
        assert float(model.tau) == pytest.approx(0.995**2)  # one decay per mixed training forward


def test_gradient_reaches_ws_and_item_table(toy):
    model = tiny_model(toy, n_memories=1, dropout=0.0)
    ce, _ = model.loss(torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([[3, 12], [5, 4]]))
    ce.backward()
    assert float(model.semantic_proj.weight.grad.abs().sum()) > 0
    assert float(model.item_embedding.weight.grad.abs().sum()) > 0
    assert model.item_embedding.weight.grad[0].abs().sum().item() == 0.0  # padding: never input nor target


@pytest.mark.parametrize("extractive", [False, True])
def test_loss_over_possible_targets_equals_the_masked_full_vocabulary_loss(toy, extractive):
    """CE over items + EOS only == CE over the whole vocabulary with PAD/SOS (and non-source items) at -inf."""
    model = tiny_model(toy, n_memories=1, dropout=0.0, extractive_mask=extractive)
    src, tgt = torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([[3, 2], [5, 4]])  # targets in the sources
    ce, _ = model.loss(src, tgt)
    ce.backward()
    fast = model.item_embedding.weight.grad.clone()
    model.zero_grad()
    tgt_in, tgt_out = model.teacher_forcing(tgt)
    states, _, _ = model._states(src, tgt_in)
    valid = tgt_out > 0
    logits = states[valid] @ model.item_embedding.weight.T
    blocked = torch.zeros(model.vocab_size, dtype=torch.bool)
    blocked[[0, model.sos]] = True
    logits = logits.masked_fill(blocked, -torch.inf)
    if extractive:
        rows = torch.nonzero(valid)[:, 0]
        logits = logits.masked_fill(~model.source_membership(model.source_tokens(src))[rows], -torch.inf)
    reference = torch.nn.functional.cross_entropy(logits, tgt_out[valid])
    reference.backward()
    assert np.isfinite(ce.item()) and ce.item() == pytest.approx(reference.item(), rel=1e-6)
    torch.testing.assert_close(fast, model.item_embedding.weight.grad)
    assert torch.isinf(model(src, tgt_in)[..., [0, model.sos]]).all()


def test_relation_features_follow_eq_5_to_7(toy):
    """f(i) = f_c + f_t + W_s e_i with the row-normalised top-k weights, by hand for one item."""
    model = tiny_model(toy, neighbours=3)
    table = model.item_embedding.weight.detach()
    i = 4
    expected = sum(model.c_weight[i, j] * table[model.c_index[i, j]] for j in range(3))
    expected = expected + sum(model.t_weight[i, j] * table[model.t_index[i, j]] for j in range(3))
    expected = expected + model.semantic_proj.weight.detach() @ model.semantic[i]
    got = model.relation_features(torch.tensor([[i, 0]])).detach()
    torch.testing.assert_close(got[0, 0], expected)
    assert float(got[0, 1].abs().sum()) == 0.0  # padding has no feature
    assert float(model.c_weight[i].sum()) == pytest.approx(1.0)


def test_init_item_embeddings_copies_backbone_rows(toy):
    model = tiny_model(toy)
    weight = torch.randn(N_ITEMS + 1, 16)
    weight[0] = 0
    model.init_item_embeddings(weight)
    torch.testing.assert_close(model.item_embedding.weight[: N_ITEMS + 1].detach(), weight)
    assert model.item_embedding.weight[N_ITEMS + 1 :].abs().max().item() < 0.2  # SOS, EOS ~ N(0, 0.02)


def test_extractive_mask_only_allows_source_items_and_eos(toy):
    model = tiny_model(toy, extractive_mask=True, n_memories=1).eval()
    src = torch.tensor([[1, 2, 3]])
    logits = model(src, torch.tensor([[N_ITEMS + 1, 3]]))
    finite = torch.isfinite(logits[0, 0]).nonzero().flatten().tolist()
    assert finite == [1, 2, 3, N_ITEMS + 2]


def test_decode_next_matches_full_decoder(toy):
    model = tiny_model(toy, n_memories=1).eval()
    memory, pad, _ = model.encode(torch.tensor([[1, 2, 3, 0], [4, 5, 6, 7]]))
    ys = torch.tensor([[N_ITEMS + 1, 5, 9, 2, 8], [N_ITEMS + 1, 1, 2, 3, 4]])
    full = model.decode(ys, memory, pad)
    cache = None
    for t in range(ys.size(1)):
        state, cache = model.decode_next(ys[:, t], t, memory, pad, cache)
        torch.testing.assert_close(state, full[:, t], atol=1e-5, rtol=1e-5)


def test_generator_overfits_eight_sequences(toy):
    """~200 Adam steps on 8 (source, edited target) pairs; greedy decoding then reproduces every target."""
    ds, _, _ = toy
    sources = [s for s in ds.sequences()[:8]]
    rng = np.random.default_rng(1)
    targets = []
    for s in sources:  # substitute one item by one that is not in the source (RaSR-style target)
        t = s.copy()
        t[int(rng.integers(len(s)))] = rng.choice(np.setdiff1d(np.arange(1, N_ITEMS + 1), s))
        targets.append(t)
    cfg = GeneratorConfig(**{**TINY, "hidden_dim": 32, "inner_dim": 64, "dropout": 0.0, "n_memories": 1,
                             "lr": 1e-2, "batch_size": 8, "epochs": 200, "keep_prefix": 0,
                             "decode_max_len": 11})
    torch.manual_seed(0)
    model = SequenceGenerator(N_ITEMS, cfg, toy[1], toy[2])
    history = fit_generator(model, sources, targets, cfg, CPU, torch.Generator().manual_seed(0),
                            progress=False)
    assert len(history) == 200 and history[-1]["loss"] < 0.05
    src = as_ragged(sources)
    padded = np.zeros((8, 10), dtype=np.int64)
    for r, s in enumerate(sources):
        padded[r, : len(s)] = s
    out, out_len = greedy_decode(model, padded, src.lengths, cfg, CPU)
    for r, t in enumerate(targets):
        assert out[r, : out_len[r]].tolist() == t.tolist()


def _fit_toy(toy, checkpoint=None, fail_after=None, deadline=None):
    """(model, history) of 3 epochs on the toy pairs from seed 0; ``fail_after`` n batches, it dies."""
    ds, graph, emb = toy
    pairs = [s for s in ds.sequences()], [s[::-1] for s in ds.sequences()]
    cfg = GeneratorConfig(**{**TINY, "batch_size": 4, "epochs": 3, "n_memories": 3})
    torch.manual_seed(0)
    model = SequenceGenerator(N_ITEMS, cfg, graph, emb)
    if fail_after is not None:
        calls, loss = [0], model.loss

        def failing(*args):
            calls[0] += 1
            if calls[0] > fail_after:
                raise KeyboardInterrupt
            return loss(*args)

        model.loss = failing
    return model, fit_generator(model, *pairs, cfg, CPU, torch.Generator().manual_seed(0),
                                checkpoint=checkpoint, progress=False, deadline=deadline)


def test_fit_generator_resumes_exactly(toy, tmp_path):
    """Interrupted after 2 of 3 epochs and resumed from the checkpoint == 3 uninterrupted epochs."""
    cfg = GeneratorConfig(**{**TINY, "batch_size": 4, "epochs": 3, "n_memories": 3})
    full_model, full_history = _fit_toy(toy)
    ckpt = tmp_path / "gen.pt"
    with pytest.raises(KeyboardInterrupt):
        _fit_toy(toy, ckpt, fail_after=6)  # 12 pairs / 4 = 3 batches per epoch: dies in epoch 3
    resumed_model, resumed_history = _fit_toy(toy, ckpt)
    assert [h["epoch"] for h in resumed_history] == [1, 2, 3]
    assert [h["loss"] for h in resumed_history] == pytest.approx([h["loss"] for h in full_history])
    for key, value in full_model.state_dict().items():
        torch.testing.assert_close(resumed_model.state_dict()[key], value)
    assert [h["lr"] for h in full_history] == pytest.approx([cosine_lr(cfg, e) for e in (1, 2, 3)])


def test_fit_generator_stops_at_its_deadline_and_resumes_exactly(toy, tmp_path):
    """A past deadline stops after epoch 1 of 3 (checkpointed); the next call ends as one run would."""
    full_model, full_history = _fit_toy(toy)
    ckpt = tmp_path / "gen.pt"
    _, cut = _fit_toy(toy, ckpt, deadline=0.0)
    assert [h["epoch"] for h in cut] == [1]
    resumed_model, resumed_history = _fit_toy(toy, ckpt, deadline=float("inf"))
    assert [h["loss"] for h in resumed_history] == pytest.approx([h["loss"] for h in full_history])
    for key, value in full_model.state_dict().items():
        torch.testing.assert_close(resumed_model.state_dict()[key], value)


def test_rasr_pairs_pair_each_variant_with_its_training_part(toy):
    ds, graph, _ = toy
    aug = augment_dataset(ds, graph, AugmentConfig(max_len=10), seed=0)
    src, tgt = rasr_pairs(ds, aug, max_len=10)
    assert src.n_rows == tgt.n_rows == aug.n_variants
    off, items, users = training_parts(ds, 10)
    for v in (0, aug.n_variants // 2, aug.n_variants - 1):
        u = int(np.flatnonzero(users == aug.source_user[v])[0])
        assert src.items[src.offsets[v] : src.offsets[v + 1]].tolist() == items[off[u] : off[u + 1]].tolist()
        assert tgt.items[tgt.offsets[v] : tgt.offsets[v + 1]].tolist() == aug.sequence(v).tolist()


# --------------------------------------------------------------------------- decoding


SOURCES = np.array([[3, 7, 1, 9, 4, 0], [5, 5, 8, 0, 0, 0], [2, 0, 0, 0, 0, 0], [6, 10, 12, 14, 16, 18]])
LENGTHS = np.array([5, 3, 1, 6])


def test_copy_prefix_drops_repeated_items():
    prefix, length = copy_prefix(torch.as_tensor(SOURCES), 2)
    assert prefix.tolist() == [[3, 7], [5, 0], [2, 0], [6, 10]]
    assert length.tolist() == [2, 1, 1, 2]


def test_copy_mode_keeps_prefix_respects_cap_and_never_repeats(toy):
    model = tiny_model(toy, n_memories=3, keep_prefix=2, prefix_mode="copy", decode_max_len=6)
    out, out_len = greedy_decode(model, SOURCES, LENGTHS, model.cfg, CPU)
    assert out.shape == (4 * 3, 5) and out_len.max() <= 5
    expected_prefix = [[3, 7], [5], [2], [6, 10]]
    for row in range(len(out)):
        seq = out[row, : out_len[row]].tolist()
        assert seq[: len(expected_prefix[row // 3])] == expected_prefix[row // 3]
        assert len(set(seq)) == len(seq) and all(1 <= i <= N_ITEMS for i in seq)
        assert (out[row, out_len[row] :] == 0).all()


def test_restrictive_steps_only_emit_source_items(toy):
    model = tiny_model(toy, n_memories=2, keep_prefix=3, prefix_mode="restrictive", generative_prob=1.0)
    out, out_len = greedy_decode(model, SOURCES, LENGTHS, model.cfg, CPU)
    for row in range(len(out)):
        source = set(SOURCES[row // 2, : LENGTHS[row // 2]].tolist())
        assert set(out[row, : min(3, out_len[row])].tolist()) <= source
    # generative probability 0: every step is restrictive
    model = tiny_model(toy, n_memories=2, keep_prefix=0, prefix_mode="restrictive", generative_prob=0.0)
    out, out_len = greedy_decode(model, SOURCES, LENGTHS, model.cfg, CPU)
    for row in range(len(out)):
        assert set(out[row, : out_len[row]].tolist()) <= set(SOURCES[row // 2, : LENGTHS[row // 2]].tolist())


def test_regeneration_is_deterministic_under_a_seed(toy):
    ds = toy[0]
    model = tiny_model(toy, n_memories=3, generative_prob=0.5)
    sources, lengths, users = regeneration_sources(ds, max_len=10)
    assert sources.shape == (12, 10) and users.tolist() == list(range(12))
    runs = [regenerate(model, sources, lengths, model.cfg, CPU, seed=7, progress=False) for _ in range(2)]
    for field in ("offsets", "items", "source", "memory"):
        assert np.array_equal(getattr(runs[0], field), getattr(runs[1], field))
    r = runs[0]
    assert r.n_decoded == 36 and r.n_sequences + r.n_empty + r.n_source_copies + r.n_repeats == 36


def test_filter_outputs_drops_empty_copies_and_repeats():
    out = np.array([[1, 2, 0], [1, 2, 0], [0, 0, 0], [3, 4, 5], [4, 3, 0], [4, 3, 0]])
    out_len = np.array([2, 2, 0, 3, 2, 2])
    sources = np.array([[1, 2, 9, 0], [3, 4, 5, 0], [4, 3, 0, 0]])
    lengths = np.array([3, 3, 2])
    kept, counts = filter_outputs(out, out_len, sources, lengths, K=2, dedup="source")
    # rows 0,1 (source 0): repeat -> keep 0; row 2 empty; row 3 == source 1; rows 4,5 (source 2): copies
    assert kept.tolist() == [0]
    assert counts == {"n_decoded": 6, "n_empty": 1, "n_source_copies": 3, "n_repeats": 1}
    out[4] = [4, 9, 0]
    kept, _ = filter_outputs(out, out_len, sources, lengths, K=2, dedup="global")
    assert kept.tolist() == [0, 4]


# --------------------------------------------------------------------------- merging and provenance


def small_regenerated(n_items=N_ITEMS) -> RegeneratedSet:
    seqs = as_ragged([[1, 2, 3], [4, 5], [6]])
    return RegeneratedSet(offsets=seqs.offsets, items=seqs.items, source=np.array([0, 0, 1]),
                          memory=np.array([0, 2, 1]), n_items=n_items, n_decoded=6, n_empty=1,
                          n_source_copies=1, n_repeats=1)


def test_training_rows_are_shifted_right_padded_pairs(toy):
    split = leave_one_out(toy[0], max_len=4)
    x, y, n = training_rows(split, small_regenerated())
    assert x.tolist() == [[1, 2, 0, 0], [4, 0, 0, 0]]
    assert y.tolist() == [[2, 3, 0, 0], [5, 0, 0, 0]]
    assert n.tolist() == [2, 1]
    extended = extend_split(split, small_regenerated())
    assert len(extended.train_len) == len(split.train_len) + 2
    assert extended.train_user[-2:].tolist() == [-1, -1]
    assert np.array_equal(extended.test_input, split.test_input)
    assert np.array_equal(extended.valid_target, split.valid_target)


def test_merge_with_original_appends_a_fraction(toy):
    ds = toy[0]
    merged = merge_with_original(ds, small_regenerated(), ratio=1.0)
    assert merged.n_users == ds.n_users + 3
    assert merged.sequence(ds.n_users + 1).tolist() == [4, 5]
    assert merge_with_original(ds, small_regenerated(), ratio=2 / 3, seed=0).n_users == ds.n_users + 2


def test_digest_tells_sets_apart_row_for_row():
    result = small_regenerated()
    assert result.digest() == small_regenerated().digest() == result.select(np.arange(3)).digest()
    assert result.select(np.array([1, 0, 2])).digest() != result.digest()  # same items, other rows
    regrouped = RegeneratedSet(offsets=np.array([0, 2, 5, 6]), items=result.items, source=result.source,
                               memory=result.memory, n_items=N_ITEMS)
    assert regrouped.digest() != result.digest()  # same flat items, other boundaries
    assert len(result.digest()) == 64


def test_save_load_roundtrip(tmp_path):
    result = small_regenerated()
    cfg = generator_config("dr4sr", epochs=2)
    path = save_regenerated(tmp_path / "regen" / "toy", result, cfg, seed=3)
    loaded, meta = load_regenerated(path)
    for field in dataclasses.fields(RegeneratedSet):
        assert np.array_equal(getattr(loaded, field.name), getattr(result, field.name))
    assert meta["seed"] == 3 and meta["config"]["epochs"] == 2
    assert meta["config"]["prefix_mode"] == "restrictive"
    assert len(meta["config_hash"]) == 10 and meta["counts"]["n_sequences"] == 3
    np.savez(path, offsets=result.offsets, items=result.items[::-1], source=result.source,
             memory=result.memory)
    with pytest.raises(ValueError, match="digest"):
        load_regenerated(path)
