"""Domain-separation labels are distinct and none is a prefix of another."""

from __future__ import annotations

from backchannel.crypto import labels


def test_labels_are_unique_and_prefix_free() -> None:
    assert len(set(labels.ALL)) == len(labels.ALL)
    for a in labels.ALL:
        for b in labels.ALL:
            assert a == b or not b.startswith(a), (a, b)


def test_every_label_constant_is_listed() -> None:
    named = {
        v
        for k, v in vars(labels).items()
        if k.isupper() and not k.startswith("_") and isinstance(v, bytes) and len(v) > 1
    }
    assert named == set(labels.ALL)
