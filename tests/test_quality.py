from __future__ import annotations

import numpy as np
import pytest

from mpqc.errors import DataError
from mpqc.quality import check_labels, choose_measure, evaluate_outputs, mean_cosine

LOGITS = [np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 1]] * 5]


def test_choice_follows_labels_and_output_shape():
    assert choose_measure(None, LOGITS, np.arange(6) % 4, "d").name == "top1"
    assert choose_measure(None, LOGITS, None, "d").name == "agreement"
    boxes = [np.zeros((6, 22, 100), np.float32)]
    assert choose_measure(None, boxes, None, "d").name == "cosine"
    assert choose_measure("cosine", LOGITS, None, "d").name == "cosine"


def test_a_vector_beside_other_outputs_is_not_taken_for_class_scores():
    """A transformer's (hidden states, pooled vector): the pooled vector is an embedding."""
    encoder = [np.zeros((6, 16, 128), np.float32), np.ones((6, 128), np.float32)]
    assert choose_measure(None, encoder, None, "d").name == "cosine"
    assert choose_measure("agreement", encoder, None, "d").output == 1


def test_top1_without_labels_and_agreement_without_classes_are_refused():
    with pytest.raises(DataError, match="needs labels"):
        choose_measure("top1", LOGITS, None, "d")
    with pytest.raises(DataError, match="class axis"):
        choose_measure("agreement", [np.zeros((6, 1), np.float32)], None, "d")


def test_sequences_agree_position_by_position():
    seq = np.zeros((2, 5, 3), np.float32)
    seq[:, :, 1] = 1
    other = seq.copy()
    other[0, 0] = [2, 0, 0]
    measure = choose_measure("agreement", [seq], None, "d")
    assert measure.score([other], [seq], None) == pytest.approx(0.9)


def test_labels_are_checked_and_one_hot_converted():
    assert check_labels(np.eye(3)[[2, 0, 1]], 3, "d").tolist() == [2, 0, 1]
    assert check_labels(np.array([1.0, 2.0]), 3, "d").tolist() == [1, 2]
    for bad, word in [
        (np.array([-1, 0]), ">= 0"),
        (np.array([0, 3]), "out of range"),
        (np.array([0.5]), "fraction"),
        (np.ones((2, 3)), "one-hot"),
        (np.zeros((2, 2, 2)), "1-D"),
    ]:
        with pytest.raises(DataError, match=word):
            check_labels(bad, 3, "d")


def test_cosine_of_identical_outputs_is_one_even_for_zeros():
    zeros = [np.zeros((3, 4), np.float32)]
    assert mean_cosine(zeros, zeros) == 1.0
    ev = evaluate_outputs(LOGITS, LOGITS, None, choose_measure(None, LOGITS, None, "d"), "test")
    assert ev.quality == 1.0 and ev.agreement == 1.0 and ev.sqnr_db == float("inf")


def test_one_value_per_sample_is_compared_over_the_samples():
    """Per sample, two positive scalars always have cosine 1: a VAD probability that halves
    must count."""
    ref = [np.array([[0.9], [0.8], [0.1], [0.7]], np.float32)]
    halved = [np.array([[0.9], [0.4], [0.6], [0.7]], np.float32)]
    assert mean_cosine(ref, ref) == 1.0
    assert mean_cosine(halved, ref) < 0.9
