"""Model shapes and padding, losses against hand-computed values, LR schedule, checkpoints, registry."""
import json
import math

import numpy as np
import pytest
import torch

from recsys_spark.errors import NotFoundError
from recsys_spark.schemas import INPUT, SEEN, TARGET
from recsys_spark.model import LSTMRecommender, load_model, save_model
from recsys_spark.registry import load_registry, register, set_production
from training.checkpoint import ArchitectureMismatch, CheckpointStore, check_architecture
from training.losses import (LossComputer, bpr_max_loss, full_softmax_loss, log_expected_counts, resolve_loss,
                             sampled_softmax_loss)
from training.trainer import lr_factor, resolve_blend, resolve_transitions


def _model(cell="lstm", **kw):
    torch.manual_seed(0)
    return LSTMRecommender(num_items=20, embedding_dim=8, hidden_size=12, cell=cell, dropout=0.0, **kw).eval()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_shapes_and_scores(cell):
    model = _model(cell, num_layers=2)
    x = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    h = model(x)
    assert h.shape == (2, 5, 8)
    scores = model.score_all(model.last_hidden(x))
    assert scores.shape == (2, 20) and torch.isinf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()
    items = torch.tensor([[3, 7], [1, 19]])
    assert torch.allclose(model.score_items(model.last_hidden(x), items), scores.gather(1, items), atol=1e-5)


def test_padding_does_not_change_real_positions():
    model = _model()
    short = model(torch.tensor([[3, 4, 5]]))
    long = model(torch.tensor([[0, 0, 0, 0, 3, 4, 5]]))
    assert torch.allclose(long[:, 4:], short, atol=1e-6)
    assert torch.all(long[:, :4] == 0)  # pad positions carry nothing
    # twin: a different real item does change the output (the check above is not vacuous)
    other = model(torch.tensor([[0, 0, 0, 0, 3, 9, 5]]))
    assert not torch.allclose(other[:, -1], long[:, -1], atol=1e-4)
    # an all-padding row gives zeros, not NaN
    assert torch.all(model(torch.zeros(1, 4, dtype=torch.long)) == 0)


def test_padding_embedding_gets_no_gradient():
    model = _model()
    model.train()
    loss = model(torch.tensor([[0, 0, 3, 4]])).sum()
    loss.backward()
    assert torch.all(model.item_embedding.weight.grad[0] == 0)


def test_save_load_weights_only(tmp_path):
    model = _model("gru")
    save_model(model, tmp_path)
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert set(state) == set(model.state_dict())
    assert json.loads((tmp_path / "architecture.json").read_text())["cell"] == "gru"
    loaded = load_model(tmp_path)
    x = torch.tensor([[0, 2, 3]])
    assert torch.equal(loaded(x), model(x))


def test_full_softmax_hand_computed():
    logits = torch.tensor([[[50.0, 1.0, 2.0, 3.0], [9.0, 9.0, 9.0, 9.0]]])  # column 0 is padding
    target = torch.tensor([[3, 0]])  # second position is padding: ignored
    expected = -math.log(math.exp(3) / (math.exp(1) + math.exp(2) + math.exp(3)))
    assert full_softmax_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.4076059644, rel=1e-8)


def test_sampled_softmax_hand_computed_with_logq_and_masks():
    pos = torch.tensor([[2.0, 7.0]])
    neg = torch.tensor([[[1.0, 0.5, 4.0], [0.0, 0.0, 0.0]]])
    valid = torch.tensor([[True, False]])
    neg_valid = torch.tensor([[[True, True, False]]])  # third negative is an accidental hit
    log_q = torch.log(torch.tensor([0.5, 2.0, 1.0]))
    corrected = [1.0 - math.log(0.5), 0.5 - math.log(2.0)]
    expected = math.log(math.exp(2.0) + sum(math.exp(c) for c in corrected)) - 2.0
    got = sampled_softmax_loss(pos, neg, valid, neg_valid, log_q)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # twin: without the correction the popular negative (q=2) would weigh more
    plain = math.log(math.exp(2.0) + math.exp(1.0) + math.exp(0.5)) - 2.0
    assert sampled_softmax_loss(pos, neg, valid, neg_valid).item() == pytest.approx(plain, rel=1e-6)


def test_bpr_max_hand_computed():
    pos = torch.tensor([[1.0]])
    neg = torch.tensor([[[0.0, 2.0, -5.0]]])
    neg_valid = torch.tensor([[[True, True, False]]])
    w0, w1 = 1 / (1 + math.e ** 2), math.e ** 2 / (1 + math.e ** 2)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    for reg in (0.0, 0.5):
        expected = -math.log(w0 * sig(1.0) + w1 * sig(-1.0)) + reg * (w0 * 0.0 + w1 * 4.0)
        got = bpr_max_loss(pos, neg, torch.tensor([[True]]), neg_valid, reg)
        assert got.item() == pytest.approx(expected, rel=1e-5)


def test_log_expected_counts():
    out = log_expected_counts(np.array([0, 3, 1, 0]), alpha=1.0, draws=5)
    # counts raised to >= 1: [-, 3, 1, 1] -> q = [3/5, 1/5, 1/5]; log(5 q)
    assert out[0] == math.inf
    assert out[1:].tolist() == pytest.approx([math.log(3), 0.0, 0.0], abs=1e-6)


def test_loss_computer_masks_padding_and_accidental_hits():
    model = _model()
    h = model(torch.tensor([[0, 3, 4], [1, 2, 5]]))
    target = torch.tensor([[0, 4, 6], [2, 5, 7]])
    negatives = torch.tensor([[8, 9], [10, 11]])
    counts = np.arange(20)
    for kind in ("softmax", "sampled_softmax", "bpr_max"):
        fn = LossComputer(kind, counts, 0.75, num_negatives=2, batch_size=2)
        base = fn(model, h, target, negatives)
        # garbage hidden state at a padding position changes nothing
        h2 = h.clone()
        h2[0, 0] = 100.0
        assert fn(model, h2, target, negatives).item() == pytest.approx(base.item(), rel=1e-6)
        # twin: the same change at a real position does change the loss
        h3 = h.clone()
        h3[0, 1] = 100.0
        assert fn(model, h3, target, negatives).item() != pytest.approx(base.item(), rel=1e-3)
    # a negative equal to the target is dropped: same loss as without it (in-batch pool off)
    fn = LossComputer("sampled_softmax", counts, 0.75, num_negatives=2, batch_size=2, in_batch=False,
                      logq=False)
    t = torch.tensor([[3, 4, 5]])
    hh = model(torch.tensor([[1, 3, 4]]))
    with_hit = fn(model, hh, t, torch.tensor([[4, 9]]))
    without = sampled_softmax_loss(model.score_items(hh, t.unsqueeze(-1)).squeeze(-1),
                                   model.score_items(hh, torch.tensor([[4, 9]]).unsqueeze(1).expand(1, 3, 2)),
                                   t != 0, torch.tensor([[[True, True], [False, True], [True, True]]]))
    assert with_hit.item() == pytest.approx(without.item(), rel=1e-6)
    with pytest.raises(ValueError):
        LossComputer("hinge")


def test_lr_schedule():
    assert lr_factor(0, 4, 20, "cosine") == pytest.approx(0.25)
    assert lr_factor(3, 4, 20, "cosine") == pytest.approx(1.0)
    assert lr_factor(4, 4, 20, "cosine") == pytest.approx(1.0)
    assert lr_factor(12, 4, 20, "cosine") == pytest.approx(0.5)
    assert lr_factor(12, 4, 20, "linear") == pytest.approx(0.5)
    assert lr_factor(20, 4, 20, "linear") == pytest.approx(0.0)
    with pytest.raises(ValueError):
        lr_factor(5, 4, 20, "step")


def test_checkpoint_corruption_falls_back(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    for epoch in range(3):
        store.save(epoch, {"epoch": epoch, "w": torch.full((3,), float(epoch))})
    assert store.epochs() == [1, 2]  # only the last two are kept
    assert store.latest_valid_epoch() == 2
    data = store.path(2).read_bytes()
    store.path(2).write_bytes(data[: len(data) // 2])  # a partial write
    assert store.load(2) is None
    assert store.latest_valid_epoch() == 1
    assert store.load(1)["w"].tolist() == [1.0, 1.0, 1.0]
    store.path(1).with_name("epoch-0001.pt.sha256").unlink()  # checksum never landed
    assert store.latest_valid_epoch() is None


def test_architecture_change_is_refused(tmp_path):
    check_architecture({"hidden_size": 8}, {"hidden_size": 8}, tmp_path)
    with pytest.raises(ArchitectureMismatch, match="hidden_size: 8 -> 16"):
        check_architecture({"hidden_size": 8}, {"hidden_size": 16}, tmp_path)


def test_registry_adds_entries_and_moves_production(tmp_path):
    register(tmp_path, "v1", {"ndcg@10": 0.1}, ds="2026-11-01")
    register(tmp_path, "v2", {"ndcg@10": 0.2}, ds="2026-11-02")
    set_production(tmp_path, "v1")
    register(tmp_path, "v2", {"ndcg@10": 0.3}, ds="2026-11-02")  # re-run: replaces only its entry
    reg = load_registry(tmp_path)
    assert reg["production"] == "v1"
    assert set(reg["versions"]) == {"v1", "v2"}
    assert reg["versions"]["v2"]["metrics"] == {"ndcg@10": 0.3} and "created_at" in reg["versions"]["v2"]
    with pytest.raises(NotFoundError, match="model version 'v9' is not registered"):
        set_production(tmp_path, "v9")


def _transition_model(**kw):
    """Items 1..19; 3 was followed by 4 (twice) and 7, 4 by 5; nothing else."""
    model = _model(transition_pairs=3, **kw)
    model.set_transitions(torch.tensor([3, 4, 3]), torch.tensor([7, 5, 4]), torch.tensor([1, 1, 2]))
    return model


def test_transition_rows_and_lookup_agree_with_the_counts():
    model = _transition_model()
    rows = model.transition_rows(torch.tensor([3, 4, 0, 9]))
    assert rows[0, 4] == 2 and rows[0, 7] == 1 and rows[0].sum() == 3
    assert rows[1, 5] == 1 and rows[1].sum() == 1 and rows[2:].sum() == 0
    items = torch.tensor([[4, 7, 5], [5, 4, 1], [1, 2, 3], [4, 4, 4]])
    assert torch.equal(model.transition_lookup(torch.tensor([3, 4, 0, 9]), items), rows.gather(1, items))
    # leaving each row's own pair out: one fewer, never below zero
    left_out = model.transition_rows(torch.tensor([3, 4, 9]), exclude=torch.tensor([4, 5, 2]))
    assert left_out[0, 4] == 1 and left_out[0, 7] == 1 and left_out[1].sum() == 0 and left_out[2].sum() == 0
    assert model.row_totals(torch.tensor([3, 4, 9]), torch.tensor([4, 5, 2])).squeeze(-1).tolist() == [2, 0, 0]


def test_sparse_transition_term_over_sorted_candidates_equals_the_dense_one():
    """The sampled loss adds the term only at the pairs that occurred (repeated candidates too)."""
    model = _transition_model()
    with torch.no_grad():
        model.transition_gate.bias.copy_(torch.tensor([0.5, 3.0, 1.0]))
    last = torch.tensor([3, 4, 9, 3])
    target = torch.tensor([4, 6, 2, 7])  # each position's own pair left out of its row total
    h = torch.randn(4, model.arch["embedding_dim"])
    candidates = torch.tensor([1, 4, 4, 5, 7, 7, 7, 12])
    totals = model.row_totals(last, target)
    dense = model.transition_term(h, model.transition_lookup(last, candidates.expand(4, -1)), totals)
    base = torch.randn(4, len(candidates))
    sparse = model.add_transition_term_sorted(base, h, last, candidates, totals)
    assert torch.allclose(sparse - base, dense, atol=1e-6)
    assert (sparse - base)[2].abs().max() == 0  # 9 was never followed: untouched
    # twin: the candidates must be sorted; unsorted, the pairs land in the wrong columns
    shuffled = candidates[torch.tensor([4, 0, 1, 5, 2, 3, 6, 7])]
    dense = model.transition_term(h, model.transition_lookup(last, shuffled.expand(4, -1)), totals)
    assert not torch.allclose(model.add_transition_term_sorted(base, h, last, shuffled, totals) - base, dense, atol=1e-3)


def test_transition_term_moves_scores_and_scorers_agree():
    model = _transition_model()
    with torch.no_grad():
        model.transition_gate.bias.copy_(torch.tensor([0.5, 3.0, 1.0]))
    x = torch.tensor([[0, 1, 3], [2, 9, 4]])
    with torch.no_grad():
        scores = model.score_next(x)
        h = model.last_hidden(x)
        delta = scores - (h @ model.item_embedding.weight.t() + model.item_bias)
    assert delta[0, 4] == pytest.approx(0.5 + 3 * math.log(3) + 2 / 3, abs=1e-5)
    assert delta[0, 7] == pytest.approx(0.5 + 3 * math.log(2) + 1 / 3, abs=1e-5)
    assert delta[1, 5] == pytest.approx(0.5 + 3 * math.log(2) + 1.0, abs=1e-5)
    assert torch.allclose(delta[0, [1, 2, 5, 9]], torch.zeros(4), atol=1e-5)
    items = torch.tensor([[4, 7, 9], [5, 1, 19]])
    with torch.no_grad():
        assert torch.allclose(model.score_items(h, items, x[:, -1]), scores.gather(1, items), atol=1e-5)
    # twin: another last item gives other scores
    assert not torch.allclose(model.score_next(torch.tensor([[0, 1, 4]]))[0, 1:], scores[0, 1:], atol=1e-3)


def test_transition_losses_leave_the_target_pair_out():
    """The softmax path equals cross-entropy over score_all with each pair excluded, and excluding
    matters: a model that simply trusted the counts would see every target as a seen transition."""
    model = _transition_model()
    inputs = torch.tensor([[0, 3, 4], [1, 3, 3]])
    target = torch.tensor([[0, 4, 5], [3, 7, 4]])
    h = model(inputs)
    valid = target != 0
    fn = LossComputer("softmax")
    loss = fn(model, h, target, torch.zeros(2, 1, dtype=torch.long), inputs)
    reference = full_softmax_loss(model.score_all(h[valid], inputs[valid], target[valid]), target[valid])
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    leaky = full_softmax_loss(model.score_all(h[valid], inputs[valid]), target[valid])
    assert leaky.item() < loss.item() - 1e-3
    with pytest.raises(ValueError, match="inputs"):
        fn(model, h, target, torch.zeros(2, 1, dtype=torch.long))
    counts = np.arange(20)
    for kind in ("sampled_softmax", "bpr_max"):
        sampled = LossComputer(kind, counts, 0.75, num_negatives=2, batch_size=2)
        negatives = torch.tensor([[7, 9], [4, 5]])
        value = sampled(model, h, target, negatives, inputs)
        assert torch.isfinite(value)
        # twin: other inputs (other transition rows) change the loss
        assert sampled(model, h, target, negatives, torch.tensor([[0, 4, 3], [1, 4, 4]])).item() \
            != pytest.approx(value.item(), rel=1e-4)


def test_transition_model_saves_loads_and_rejects_bad_pairs(tmp_path):
    model = _transition_model()
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    x = torch.tensor([[0, 1, 3]])
    assert torch.equal(loaded.score_next(x), model.score_next(x))
    assert json.loads((tmp_path / "architecture.json").read_text())["transition_pairs"] == 3
    with pytest.raises(ValueError, match="duplicate"):
        _model(transition_pairs=2).set_transitions(torch.tensor([3, 3]), torch.tensor([4, 4]), torch.ones(2))
    with pytest.raises(ValueError, match="outside"):
        _model(transition_pairs=1).set_transitions(torch.tensor([20]), torch.tensor([4]), torch.ones(1))
    with pytest.raises(ValueError, match="built for"):
        _model(transition_pairs=1).set_transitions(torch.tensor([3, 4]), torch.tensor([4, 5]), torch.ones(2))
    with pytest.raises(ValueError, match="last item"):
        model.score_all(model.last_hidden(x))


def test_auto_transitions_are_off_only_where_test_queries_come_from_new_sessions():
    assert resolve_transitions("auto", "leave_last_out") and resolve_transitions("auto", "temporal")
    assert not resolve_transitions("auto", "validation_only")
    assert resolve_transitions(True, "validation_only") and not resolve_transitions(False, "leave_last_out")
    with pytest.raises(ValueError, match="true, false or auto"):
        resolve_transitions("sometimes", "leave_last_out")


def test_auto_loss_is_the_full_softmax_up_to_the_threshold_and_sampled_beyond():
    assert resolve_loss("auto", 20001, 20000) == "softmax"  # 20,000 items plus padding
    assert resolve_loss("auto", 20002, 20000) == "sampled_softmax"
    assert resolve_loss("bpr_max", 2, 20000) == "bpr_max"


@pytest.mark.parametrize("transitions", [False, True])
def test_many_shared_negatives_with_logq_approach_the_full_softmax(transitions):
    """Importance sampling: with logQ, M shared popularity negatives estimate the softmax's
    normaliser, so the loss tends to the full softmax's; the twin without logQ is far off."""
    model = _transition_model() if transitions else _model()
    inputs = torch.tensor([[0, 3, 4], [1, 2, 5]])
    target = torch.tensor([[0, 4, 6], [2, 5, 7]])
    h = model(inputs)
    counts = np.arange(20) ** 2
    full = LossComputer("softmax")(model, h, target, None, inputs).item()
    padding_only = torch.zeros(2, 1, dtype=torch.long)  # no per-example negatives
    torch.manual_seed(1)
    sampled = LossComputer("sampled_softmax", counts, 0.75, num_negatives=1, batch_size=2, in_batch=False,
                           shared_negatives=200_000)(model, h, target, padding_only, inputs).item()
    assert sampled == pytest.approx(full, rel=0.01)
    torch.manual_seed(1)
    biased = LossComputer("sampled_softmax", counts, 0.75, num_negatives=1, batch_size=2, in_batch=False,
                          logq=False, shared_negatives=200_000)(model, h, target, padding_only, inputs).item()
    assert biased > full + 5


def test_validation_masks_seen_items_only_where_the_evaluation_does():
    """On session data (``evaluate.mask_seen`` false) a return to a session's item is a hit to rank,
    so early stopping must not rank it among unseen items only."""
    from training.trainer import split_ranks
    model = _model()
    with torch.no_grad():
        model.item_bias[5] = 100.0  # the session's other item outranks everything
    split = {INPUT: torch.tensor([[0, 3, 5]]), SEEN: torch.tensor([[3, 5]]), TARGET: torch.tensor([3])}
    with torch.no_grad():
        scores = model.score_next(split[INPUT])[0]
    above = int((scores[1:] >= scores[3]).sum()) - 1  # every item but padding and the target
    assert split_ranks(model, split, 8, mask_seen=False).tolist() == [1 + above]
    # twin: masked, the other seen item is no competitor
    assert split_ranks(model, split, 8, mask_seen=True).tolist() == [above]


def _blend_model(weights=(2.0, 0.5, 0.0, 0.0), transitions=False):
    model = _model(blend=True, learned_transitions=False, transition_pairs=3 if transitions else None)
    if transitions:
        model.set_transitions(torch.tensor([3, 3, 4]), torch.tensor([4, 7, 9]), torch.tensor([2.0, 1.0, 5.0]))
    model.blend_weights.copy_(torch.tensor(weights))
    return model


def _blend_delta(model, x):
    with torch.no_grad():
        h = model.last_hidden(x)
        return model.score_next(x) - (h @ model.item_embedding.weight.t() + model.item_bias), h


def test_blend_scores_the_history_and_the_counts_and_scorers_agree():
    model = _blend_model()
    x = torch.tensor([[0, 3, 5, 3], [1, 2, 3, 4]])
    delta, h = _blend_delta(model, x)
    assert delta[0, 3] == pytest.approx(2.5, abs=1e-5)  # the last item, also earlier in the window
    assert delta[0, 5] == pytest.approx(0.5, abs=1e-5)
    assert delta[1, 4] == pytest.approx(2.5, abs=1e-5) and delta[1, 1] == pytest.approx(0.5, abs=1e-5)
    # twin: items outside the window get nothing
    assert torch.allclose(delta[0, [1, 2, 4, 19]], torch.zeros(4), atol=1e-5)
    items = torch.tensor([[3, 5, 9], [4, 1, 19]])
    with torch.no_grad():
        assert torch.allclose(model.score_items(h, items, history=x), model.score_next(x).gather(1, items), atol=1e-5)
    with pytest.raises(ValueError, match="history"):
        model.score_all(h, x[:, -1])
    counted = _blend_model((0.0, 0.0, 1.0, 2.0), transitions=True)
    assert not counted.uses_transitions and not hasattr(counted, "transition_gate")
    delta, _ = _blend_delta(counted, x)
    assert delta[0, 4] == pytest.approx(1 + 2 * math.log(3), abs=1e-5)  # 3 -> 4 twice
    assert delta[0, 7] == pytest.approx(1 + 2 * math.log(2), abs=1e-5)
    assert delta[1, 9] == pytest.approx(1 + 2 * math.log(6), abs=1e-5)  # 4 -> 9 five times
    assert torch.allclose(delta[1, 1:9], torch.zeros(8), atol=1e-5)  # twin: no count, no term
    with torch.no_grad():
        assert torch.allclose(counted.score_items(h, items, history=x), counted.score_next(x).gather(1, items),
                              atol=1e-5)


def test_blend_weights_are_chosen_on_validation_and_saved(tmp_path):
    """Validation targets that repeat the last item: the grid search finds weights that rank them
    first; the twin, targets that never repeat, keeps the weights at zero. Counts are searched only
    where the model does not learn the transition term."""
    from training.comm import Comm
    from training.trainer import calibrate_blend, split_ranks

    model = _blend_model((0.0, 0.0, 0.0, 0.0))
    inputs = torch.tensor([[0, 2, 7], [0, 3, 9], [4, 5, 6], [0, 0, 8]])
    repeats = {INPUT: inputs, TARGET: inputs[:, -1], SEEN: [[] for _ in inputs]}
    assert (split_ranks(model, repeats, 2, mask_seen=False) > 1).any()
    weights, metrics = calibrate_blend(model, repeats, 2, False, Comm())
    assert weights[:2] != [0.0, 0.0] and weights[2:] == [0.0, 0.0] and metrics["hr@1"] == 1.0
    preset = _blend_model((4.0, 4.0, 0.0, 0.0))
    preset.load_state_dict({**model.state_dict(), "blend_weights": preset.blend_weights})
    assert calibrate_blend(preset, repeats, 2, False, Comm())[0] == weights  # searched from the bare scores
    assert preset.blend_weights.tolist() == [4.0, 4.0, 0.0, 0.0]  # and the argument left as it was
    others = {**repeats, TARGET: torch.tensor([11, 12, 13, 14])}
    assert calibrate_blend(model, others, 2, False, Comm())[0] == [0.0, 0.0, 0.0, 0.0]
    model.blend_weights.copy_(torch.tensor(weights))
    save_model(model, tmp_path)
    assert torch.equal(load_model(tmp_path).blend_weights, torch.tensor(weights))
    assert json.loads((tmp_path / "architecture.json").read_text())["blend"] is True
    counted = _blend_model((0.0, 0.0, 0.0, 0.0), transitions=True)
    followers = {INPUT: torch.tensor([[0, 1, 3], [0, 2, 4]]), TARGET: torch.tensor([7, 9]), SEEN: [[], []]}
    assert calibrate_blend(counted, followers, 2, False, Comm())[0][2:] != [0.0, 0.0]


def test_auto_blend_follows_the_seen_mask():
    assert resolve_blend("auto", mask_seen=False) and not resolve_blend("auto", mask_seen=True)
    assert resolve_blend(True, mask_seen=True) and not resolve_blend(False, mask_seen=False)
    with pytest.raises(ValueError, match="true, false or auto"):
        resolve_blend("often", mask_seen=False)

def test_hidden_dropout_acts_in_training_only_and_old_artifacts_load(tmp_path):
    model = _model(hidden_dropout=0.5)
    x = torch.tensor([[0, 1, 3, 4]])
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # eval: off
        model.train()
        torch.manual_seed(0)
        assert not torch.equal(model(x), model(x))  # twin: on while training
    save_model(_model(), tmp_path)
    assert "hidden_dropout" not in json.loads((tmp_path / "architecture.json").read_text())
    assert load_model(tmp_path).hidden_dropout.p == 0.0
