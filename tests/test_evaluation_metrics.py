"""Metrics on hand-made ranked lists with known answers."""
import pytest

from app.evaluation.metrics import average_precision, precision_at, recall_at, summarize


def test_average_precision_known_cases():
    assert average_precision([True, False, True], 2) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert average_precision([False, True], 1) == pytest.approx(0.5)
    assert average_precision([True, True, True], 3) == 1.0
    # a relevant item never returned counts as zero
    assert average_precision([True, False], 2) == pytest.approx(0.5)
    assert average_precision([False, False], 0) == 0.0


def test_precision_and_recall_at_k():
    ranked = [False, True, True, False]
    assert precision_at(ranked, 1) == 0.0
    assert precision_at(ranked, 2) == 0.5
    assert recall_at(ranked, 2, 1) == 0.0
    assert recall_at(ranked, 2, 3) == 1.0
    assert recall_at(ranked, 4, 4) == 0.5


def test_summary_means_over_queries_with_relevant_items():
    lists = [([True, False, True], 2), ([False, True, False], 1), ([False, False], 0)]
    s = summarize(lists, k=2)
    assert s.n_queries == 2
    assert s.map == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2)
    assert s.p_at_1 == pytest.approx(0.5)
    assert s.p_at_r == pytest.approx((0.5 + 0.0) / 2)
    assert s.recall_at_1 == pytest.approx((0.5 + 0.0) / 2)
    assert s.recall_at_k == pytest.approx((0.5 + 1.0) / 2)
