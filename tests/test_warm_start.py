"""Warm start from yesterday's model: old items keep their learned rows, new items a fresh init."""
import pytest
import torch

from recsys_spark.model import LSTMRecommender, warm_start


def test_warm_start_copies_old_rows_and_keeps_new_ones():
    torch.manual_seed(0)
    old = LSTMRecommender(5, embedding_dim=4, hidden_size=6)
    new = LSTMRecommender(8, embedding_dim=4, hidden_size=6)
    fresh_rows = new.item_embedding.weight[5:].detach().clone()
    warm_start(new, old)
    assert torch.equal(new.item_embedding.weight[:5], old.item_embedding.weight)
    assert torch.equal(new.item_embedding.weight[5:], fresh_rows)
    assert torch.equal(new.rnn.weight_hh_l0, old.rnn.weight_hh_l0)
    # the twin: without warm start the shared rows differ
    assert not torch.equal(LSTMRecommender(8, 4, 6).item_embedding.weight[:5], old.item_embedding.weight)


def test_warm_start_refuses_a_changed_architecture_or_a_shrunk_vocabulary():
    with pytest.raises(ValueError, match="architecture changed"):
        warm_start(LSTMRecommender(8, 4, 7), LSTMRecommender(5, 4, 6))
    with pytest.raises(ValueError, match="only 4"):
        warm_start(LSTMRecommender(4, 4, 6), LSTMRecommender(5, 4, 6))


def test_warm_start_keeps_tonights_transitions():
    torch.manual_seed(0)
    old = LSTMRecommender(5, embedding_dim=4, hidden_size=6, transition_pairs=1)
    old.set_transitions(torch.tensor([1]), torch.tensor([2]), torch.tensor([3]))
    new = LSTMRecommender(8, embedding_dim=4, hidden_size=6, transition_pairs=2)
    new.set_transitions(torch.tensor([1, 6]), torch.tensor([2, 7]), torch.tensor([4, 1]))
    warm_start(new, old)
    assert new.transition_keys.tolist() == [1 * 8 + 2, 6 * 8 + 7] and new.transition_counts.tolist() == [4, 1]
    assert torch.equal(new.transition_gate.weight, old.transition_gate.weight)
    # twin: a model without the transition term cannot start from one with it
    with pytest.raises(ValueError, match="transitions"):
        warm_start(LSTMRecommender(8, 4, 6), old)
