"""Hand-checked tests of rasr_lib.evaluation: ranks, metrics, the sampled protocol, evaluate()."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rasr_lib.config import EvalConfig
from rasr_lib.data.schema import SeqDataset
from rasr_lib.data.split import leave_one_out
from rasr_lib.evaluation import (
    evaluate,
    metrics_from_ranks,
    protocol_name,
    sampled_negatives,
    sampled_target_ranks,
    target_ranks,
)

# --------------------------------------------------------------------------- target_ranks


def test_target_ranks_hand_example():
    # columns: pad, item1..item5; the padding column has the highest score and must be ignored
    scores = torch.tensor([[9.0, 0.5, 0.9, 0.7, 0.7, 0.1]])
    target = torch.tensor([4])  # score 0.7, tied with item 3
    before = scores.clone()
    # no exclusion: item 2 (0.9) is above, item 3 (0.7) ties and counts against -> rank 3
    assert target_ranks(scores, target).tolist() == [3]
    # exclude items 2 and 4; item 4 is the target (a repeat purchase) and is still ranked
    exclude = torch.zeros(1, 6, dtype=torch.bool)
    exclude[0, [2, 4]] = True
    # competitors left: item1 0.5, item3 0.7 (tie, against), item5 0.1 -> rank 2
    assert target_ranks(scores, target, exclude).tolist() == [2]
    # the inputs are not modified
    assert torch.equal(scores, before)
    assert exclude[0].tolist() == [False, False, True, False, True, False]


def test_target_ranks_constant_and_nan_scorers_get_the_worst_rank():
    const = torch.zeros(2, 6)
    target = torch.tensor([3, 5])
    assert target_ranks(const, target).tolist() == [5, 5]  # 5 real items, all tied
    exclude = torch.zeros(2, 6, dtype=torch.bool)
    exclude[0, 1] = True  # one competitor removed
    exclude[1, 5] = True  # only the target itself: removes nothing
    assert target_ranks(const, target, exclude).tolist() == [4, 5]
    nan_target = torch.tensor([[0.0, 1.0, float("nan"), 3.0, 4.0, 5.0]])
    assert target_ranks(nan_target, torch.tensor([2])).tolist() == [5]
    nan_other = torch.tensor([[0.0, 1.0, 9.0, float("nan"), 4.0, 5.0]])
    assert target_ranks(nan_other, torch.tensor([2])).tolist() == [2]  # NaN counted above


def test_target_ranks_matches_brute_force():
    gen = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 4, (16, 9), generator=gen).float()  # many ties
    target = torch.randint(1, 9, (16,), generator=gen)
    exclude = torch.rand(16, 9, generator=gen) < 0.3
    got = target_ranks(scores, target, exclude).tolist()
    for u in range(16):
        t = int(target[u])
        above = [j for j in range(1, 9) if j != t and not exclude[u, j] and scores[u, j] >= scores[u, t]]
        assert got[u] == 1 + len(above)


def test_target_ranks_counts_wide_catalogues_in_blocks(monkeypatch):
    # the CPU count runs in int16 blocks of _INT16_BLOCK columns; shrink the block to test the seams
    import rasr_lib.evaluation as ev

    scores = torch.tensor([[5.0, 1.0, 2.0, 3.0, 4.0, 3.0, 0.5, 7.0]])
    expected = target_ranks(scores, torch.tensor([3])).tolist()
    assert expected == [4]  # items 4 (4.0), 5 (3.0 tie), 7 (7.0) count against item 3
    monkeypatch.setattr(ev, "_INT16_BLOCK", 3)
    assert target_ranks(scores, torch.tensor([3])).tolist() == [4]


def test_target_ranks_rejects_padding_target():
    with pytest.raises(ValueError, match="padding"):
        target_ranks(torch.zeros(1, 4), torch.tensor([0]))


# --------------------------------------------------------------------------- metrics


def test_metrics_from_ranks_hand_example():
    m = metrics_from_ranks([1, 2, 11, 25])
    assert set(m) == {"recall@10", "ndcg@10", "recall@20", "ndcg@20"}
    assert m["recall@10"] == 0.5
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 4)  # 0.407732
    assert m["ndcg@10"] == pytest.approx(0.407732, abs=1e-6)
    assert m["recall@20"] == 0.75
    # rank 11 now counts: 1/log2(12) = 0.278943
    assert m["ndcg@20"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(12)) / 4)
    assert m["ndcg@20"] == pytest.approx(0.477468, abs=1e-6)
    assert all(isinstance(v, float) for v in m.values())


def test_metrics_perfect_and_input_types():
    for ranks in ([1, 1, 1], np.ones(3, dtype=np.int64), torch.ones(3, dtype=torch.long)):
        assert metrics_from_ranks(ranks) == {"recall@10": 1.0, "ndcg@10": 1.0, "recall@20": 1.0, "ndcg@20": 1.0}
    m = metrics_from_ranks(np.array([3]), ks=(2, 3))
    assert m == {"recall@2": 0.0, "ndcg@2": 0.0, "recall@3": 1.0, "ndcg@3": 0.5}


# --------------------------------------------------------------------------- evaluate


class StaticScorer(torch.nn.Module):
    """Fake model: every user gets the same score row; item i scores 7 - i (item 1 best)."""

    def __init__(self, n_items: int = 6):
        super().__init__()
        self.register_buffer("row", torch.tensor([100.0] + [7.0 - i for i in range(1, n_items + 1)]))
        self.calls: list[tuple[list, list, bool, bool]] = []

    def full_sort_predict(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        self.calls.append((item_seq.tolist(), seq_len.tolist(), self.training, torch.is_grad_enabled()))
        return self.row.expand(item_seq.shape[0], -1).clone()


def tiny_split(max_len: int = 3):
    # u0: 1 2 3 4   -> valid: [1 2] -> 3;      test: [1 2 3] -> 4
    # u1: 5 6 5     -> valid: [5] -> 6;        test: [5 6] -> 5 (repeat purchase)
    # u2: 2 4 6 1 3 -> valid: [2 4 6] -> 1;    test: [4 6 1] (+ item 2 beyond max_len) -> 3
    seqs = [[1, 2, 3, 4], [5, 6, 5], [2, 4, 6, 1, 3]]
    offsets = np.cumsum([0] + [len(s) for s in seqs]).astype(np.int64)
    ds = SeqDataset("tiny", offsets, np.concatenate(seqs).astype(np.int64), n_items=6)
    return leave_one_out(ds, max_len=max_len)


def test_evaluate_full_ranking_by_hand():
    split = tiny_split()
    model = StaticScorer()
    model.train()
    cfg = EvalConfig(ks=(1, 3), batch_size=2)
    # static order 1 > 2 > ... > 6, so the unmasked rank of item j is j
    res = evaluate(model, split, "test", EvalConfig(ks=(1, 3), batch_size=2, mask_history=False), return_ranks=True)
    assert res["ranks"].tolist() == [4, 5, 3]
    assert res["ranks"].dtype == np.int64
    assert res["recall@1"] == 0.0 and res["recall@3"] == pytest.approx(1 / 3)
    assert res["ndcg@3"] == pytest.approx(0.5 / 3)  # rank 3 -> 1/log2(4) = 0.5
    assert (res["protocol"], res["mask_history"], res["part"], res["n_users"]) == ("full", False, "test", 3)
    # masked: u0 history {1,2,3} all above 4 -> 1; u1 target 5 is also in its history {5,6}
    # but stays ranked, nothing above it is masked -> 5; u2 history {2,4,6,1} -> 3 ranks 1
    # (item 2 lies beyond max_len=3 of the input but is still history)
    res = evaluate(model, split, "test", cfg, return_ranks=True)
    assert res["ranks"].tolist() == [1, 5, 1]
    assert res["recall@1"] == pytest.approx(2 / 3) and res["ndcg@3"] == pytest.approx(2 / 3)
    assert res["mask_history"] is True and res["protocol"] == "full"
    # valid part uses the valid targets (3, 6, 1) and shorter histories ({1,2}, {5}, {2,4,6})
    res = evaluate(model, split, "valid", EvalConfig(mask_history=False), return_ranks=True)
    assert res["ranks"].tolist() == [3, 6, 1] and res["part"] == "valid"
    res = evaluate(model, split, "valid", cfg, return_ranks=True)
    assert res["ranks"].tolist() == [1, 5, 1]
    assert "ranks" not in evaluate(model, split, "valid", cfg)


def test_evaluate_feeds_the_right_inputs_and_restores_mode():
    split = tiny_split()
    model = StaticScorer()
    model.train()
    evaluate(model, split, "test", EvalConfig(batch_size=2))
    assert model.training  # restored
    # users go in order of history length, each batch right-padded to its longest input
    assert [c[0] for c in model.calls] == [[[5, 6, 0], [1, 2, 3]], [[4, 6, 1]]]
    assert [c[1] for c in model.calls] == [[2, 3], [3]]
    assert all(not training and not grad for _, _, training, grad in model.calls)
    model.calls.clear()
    model.eval()
    evaluate(model, split, "valid", EvalConfig())
    assert not model.training
    assert model.calls[0][:2] == ([[5, 0, 0], [1, 2, 0], [2, 4, 6]], [1, 2, 3])


def test_evaluate_rejects_unknown_protocol_and_part():
    split, model = tiny_split(), StaticScorer()
    with pytest.raises(ValueError, match="protocol"):
        evaluate(model, split, "test", EvalConfig(protocol="sampled99"))
    with pytest.raises(ValueError, match="part"):
        evaluate(model, split, "train")
    with pytest.raises(ValueError, match="protocol"):
        protocol_name(EvalConfig(protocol="nope"))


def test_protocol_names():
    assert protocol_name(EvalConfig()) == "full ranking, history masked"
    assert protocol_name(EvalConfig(mask_history=False)) == "full ranking, history not masked"
    assert protocol_name(EvalConfig(protocol="sampled100")) == "1+100 sampled negatives, history excluded"
    assert (
        protocol_name(EvalConfig(protocol="sampled100", mask_history=False))
        == "1+100 sampled negatives, history not excluded"
    )


# --------------------------------------------------------------------------- sampled protocol


def test_sampled_negatives_only_allowed_items():
    # 6 items; target 2, history {1, 3}: the only allowed negatives are 4, 5, 6
    target = torch.tensor([2])
    exclude = torch.zeros(1, 7, dtype=torch.bool)
    exclude[0, [1, 3]] = True
    for seed in range(5):
        neg = sampled_negatives(exclude, target, 6, 3, torch.Generator().manual_seed(seed))
        assert sorted(neg[0].tolist()) == [4, 5, 6]
    # asking for more than exist: the three allowed ones, the rest marked -1
    neg = sampled_negatives(exclude, target, 6, 5, torch.Generator().manual_seed(0))
    assert sorted(neg[0].tolist()) == [-1, -1, 4, 5, 6]
    # scores: negatives 4 (0.0), 5 (5.0, above), 6 (1.0, tie -> against) -> rank 1 + 2 = 3
    scores = torch.tensor([[100.0, 9.0, 1.0, 9.0, 0.0, 5.0, 1.0]])
    assert sampled_target_ranks(scores, target, exclude, 3, torch.Generator().manual_seed(0)).tolist() == [3]
    # without exclusion items 1 and 3 (9.0) may be drawn too; with all 5 others drawn -> rank 5
    assert sampled_target_ranks(scores, target, None, 5, torch.Generator().manual_seed(0)).tolist() == [5]


def test_sampled_negatives_large_catalogue_and_determinism():
    n_users, n_items, n = 64, 500, 100
    gen = torch.Generator().manual_seed(7)
    target = torch.randint(1, n_items + 1, (n_users,), generator=gen)
    exclude = torch.rand(n_users, n_items + 1, generator=gen) < 0.1
    neg = sampled_negatives(exclude, target, n_items, n, torch.Generator().manual_seed(123))
    assert neg.shape == (n_users, n)
    assert bool((neg >= 1).all())  # never padding, never missing
    assert not bool((neg == target[:, None]).any())
    assert not bool(exclude.gather(1, neg).any())
    assert all(len(set(row)) == n for row in neg.tolist())  # distinct per user
    again = sampled_negatives(exclude, target, n_items, n, torch.Generator().manual_seed(123))
    other = sampled_negatives(exclude, target, n_items, n, torch.Generator().manual_seed(124))
    assert torch.equal(neg, again) and not torch.equal(neg, other)
    scores = torch.randn(n_users, n_items + 1, generator=gen)
    ranks = sampled_target_ranks(scores, target, exclude, n, torch.Generator().manual_seed(1))
    assert int(ranks.min()) >= 1 and int(ranks.max()) <= n + 1
    const = torch.zeros(n_users, n_items + 1)
    assert sampled_target_ranks(const, target, exclude, n, torch.Generator().manual_seed(1)).tolist() == [n + 1] * n_users


def test_sampled_negatives_are_uniform():
    # 20 items, target 1, history {2, 3}: 17 allowed items, each drawn with probability 5/17
    n_users = 20000
    target = torch.ones(n_users, dtype=torch.long)
    exclude = torch.zeros(n_users, 21, dtype=torch.bool)
    exclude[:, [2, 3]] = True
    neg = sampled_negatives(exclude, target, 20, 5, torch.Generator().manual_seed(0))
    counts = torch.bincount(neg.flatten(), minlength=21).double() / n_users
    assert counts[:4].tolist() == [0.0, 0.0, 0.0, 0.0]
    p = 5 / 17
    assert torch.allclose(counts[4:], torch.full((17,), p, dtype=torch.double), atol=5 * math.sqrt(p * (1 - p) / n_users))


def test_evaluate_sampled_protocol():
    split, model = tiny_split(), StaticScorer()
    cfg = EvalConfig(protocol="sampled100", n_negatives=2, ks=(1, 3))
    a = evaluate(model, split, "test", cfg, return_ranks=True)
    b = evaluate(model, split, "test", cfg, return_ranks=True)  # default generator seed 0
    assert a["ranks"].tolist() == b["ranks"].tolist()
    assert a["protocol"] == "sampled100" and a["n_users"] == 3
    # masked: u0 (target 4, history {1,2,3}) can only draw 5 and 6, both below -> rank 1;
    # u2 (target 3, history {1,2,4,6}) can only draw 5 -> rank 1 (one negative, with a warning);
    # u1 (target 5, history {5,6}) draws 2 of {1,2,3,4}, all above -> rank 3
    assert a["ranks"].tolist() == [1, 3, 1]
    c = evaluate(model, split, "test", cfg, generator=torch.Generator().manual_seed(5), return_ranks=True)
    assert c["ranks"].tolist() == [1, 3, 1]
    # when every allowed item is drawn the sampled ranks equal the full-ranking ones
    for mask, expected in ((True, [1, 5, 1]), (False, [4, 5, 3])):
        cfg = EvalConfig(protocol="sampled100", n_negatives=5, mask_history=mask)
        assert evaluate(model, split, "test", cfg, return_ranks=True)["ranks"].tolist() == expected


def test_cold_target_users_are_those_whose_target_never_trains():
    from rasr_lib.evaluation import cold_target_users

    # user 0 trains on 1 -> 2 -> 3; user 1 on 2 -> 4 -> 6. Test targets: 5 (cold), 3 (seen in user 0's row).
    ds = SeqDataset.from_lists([[1, 2, 3, 4, 5], [2, 4, 6, 7, 3]], 7)
    split = leave_one_out(ds, max_len=4)
    assert cold_target_users(split, "test").tolist() == [True, False]
    # validation targets: 4 (trained in user 1's row), 7 (never trained)
    assert cold_target_users(split, "valid").tolist() == [False, True]
