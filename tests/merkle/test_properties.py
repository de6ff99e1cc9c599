"""Property tests: generation and verification against the plain RFC reference.

Trees of up to a few hundred distinct leaves. Distinct leaves matter: with two
equal leaves, moving a proof to the other's index is not an alteration at all.
"""

from __future__ import annotations

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from backchannel.errors import RemoteProtocolError
from backchannel.protocol import merkle
from backchannel.protocol.merkle import MemoryLog
from tests.merkle import reference as ref

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

LEAVES = st.lists(st.binary(max_size=12), min_size=1, max_size=300, unique=True)


def _log(leaves: list[bytes]) -> MemoryLog:
    log = MemoryLog()
    for d in leaves:
        log.append(d)
    return log


def _flip(b: bytes, bit: int) -> bytes:
    i = (bit // 8) % len(b)
    return b[:i] + bytes([b[i] ^ (1 << (bit % 8))]) + b[i + 1 :]


def _fails(call: object, *args: object) -> bool:
    try:
        call(*args)  # type: ignore[operator]
    except RemoteProtocolError:
        return True
    return False


@st.composite
def tree_and_index(draw: st.DrawFn) -> tuple[list[bytes], int, int]:
    leaves = draw(LEAVES)
    size = draw(st.integers(1, len(leaves)))
    index = draw(st.integers(0, size - 1))
    return leaves, index, size


@st.composite
def tree_and_sizes(draw: st.DrawFn) -> tuple[list[bytes], int, int]:
    leaves = draw(LEAVES)
    new = draw(st.integers(1, len(leaves)))
    old = draw(st.integers(1, new))
    return leaves, old, new


# -- Same answers as the reference -------------------------------------------


@SETTINGS
@given(leaves=st.lists(st.binary(max_size=12), max_size=300))
def test_roots_match_reference(leaves: list[bytes]) -> None:
    want = ref.mth(leaves)
    assert merkle.root(leaves) == want
    log = _log(leaves)
    assert log.root() == log.frontier().root() == want
    # Two writes per leaf, amortized: a tree of n leaves has 2n - popcount(n) nodes.
    assert len(log._nodes) == 2 * len(leaves) - len(leaves).bit_count()


@SETTINGS
@given(leaves=LEAVES)
def test_every_prefix_root_matches_reference(leaves: list[bytes]) -> None:
    log = _log(leaves)
    for size in range(0, len(leaves) + 1, max(1, len(leaves) // 17)):
        assert log.root(size) == ref.mth(leaves[:size])


@SETTINGS
@given(case=tree_and_index())
def test_inclusion_proofs_match_reference_and_verify(case: tuple[list[bytes], int, int]) -> None:
    leaves, index, size = case
    proof = _log(leaves).inclusion_proof(index, size)
    assert proof == ref.path(index, leaves[:size])
    merkle.verify_inclusion(
        merkle.leaf_hash(leaves[index]), index, size, proof, ref.mth(leaves[:size])
    )


@SETTINGS
@given(case=tree_and_sizes())
def test_consistency_proofs_match_reference_and_verify(case: tuple[list[bytes], int, int]) -> None:
    leaves, old, new = case
    proof = _log(leaves).consistency_proof(old, new)
    assert proof == ref.proof(old, leaves[:new])
    merkle.verify_consistency(old, new, ref.mth(leaves[:old]), ref.mth(leaves[:new]), proof)


@SETTINGS
@given(case=tree_and_index(), extra=st.integers(0, 40))
def test_proofs_for_a_past_size_are_unchanged_by_later_appends(
    case: tuple[list[bytes], int, int], extra: int
) -> None:
    leaves, index, size = case
    log = _log(leaves)
    before = log.inclusion_proof(index, size), log.consistency_proof(index + 1, size)
    for i in range(extra):
        log.append(b"later" + i.to_bytes(2, "big"))
    assert (log.inclusion_proof(index, size), log.consistency_proof(index + 1, size)) == before


# -- Any alteration fails ----------------------------------------------------


@SETTINGS
@given(case=tree_and_index(), bit=st.integers(0, 255), data=st.data())
def test_altered_inclusion_fails(
    case: tuple[list[bytes], int, int], bit: int, data: st.DataObject
) -> None:
    leaves, index, size = case
    proof = ref.path(index, leaves[:size])
    leaf, root = merkle.leaf_hash(leaves[index]), ref.mth(leaves[:size])
    v = merkle.verify_inclusion

    assert _fails(v, _flip(leaf, bit), index, size, proof, root)
    assert _fails(v, leaf, index, size, proof, _flip(root, bit))
    for j in range(len(proof)):
        bad = [*proof]
        bad[j] = _flip(bad[j], bit)
        assert _fails(v, leaf, index, size, bad, root)
    if proof:
        assert _fails(v, leaf, index, size, proof[:-1], root)
        assert _fails(v, leaf, index, size, proof[1:], root)
    assert _fails(
        v, leaf, index, size, [*proof, data.draw(st.binary(min_size=32, max_size=32))], root
    )
    assert _fails(v, leaf, index, size, [root, *proof], root)
    if len(proof) > 1 and proof[0] != proof[1]:
        assert _fails(v, leaf, index, size, [proof[1], proof[0], *proof[2:]], root)

    # Another index, whatever its leaf, with this proof.
    if size > 1:
        other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index))
        assert _fails(v, leaf, other, size, proof, root)
        assert _fails(v, merkle.leaf_hash(leaves[other]), other, size, proof, root)
    assert _fails(v, leaf, size, size, proof, root)

    # Another size, with that size's real root: only if its proof is the same one.
    other_size = data.draw(st.integers(index + 1, len(leaves)))
    if other_size != size:
        other_root = ref.mth(leaves[:other_size])
        if ref.path(index, leaves[:other_size]) != proof:
            assert _fails(v, leaf, index, other_size, proof, other_root)


@SETTINGS
@given(case=tree_and_sizes(), bit=st.integers(0, 255), data=st.data())
def test_altered_consistency_fails(
    case: tuple[list[bytes], int, int], bit: int, data: st.DataObject
) -> None:
    leaves, old, new = case
    assume(old < new)
    proof = ref.proof(old, leaves[:new])
    r1, r2 = ref.mth(leaves[:old]), ref.mth(leaves[:new])
    v = merkle.verify_consistency

    assert _fails(v, old, new, _flip(r1, bit), r2, proof)
    assert _fails(v, old, new, r1, _flip(r2, bit), proof)
    assert _fails(v, old, new, r2, r1, proof)
    for j in range(len(proof)):
        bad = [*proof]
        bad[j] = _flip(bad[j], bit)
        assert _fails(v, old, new, r1, r2, bad)
    assert _fails(v, old, new, r1, r2, proof[:-1])
    assert _fails(v, old, new, r1, r2, proof[1:])
    assert _fails(v, old, new, r1, r2, [*proof, proof[-1]])
    assert _fails(v, old, new, r1, r2, [r1, *proof])
    assert _fails(v, old, new, r1, r2, [])
    assert _fails(v, new, old, r2, r1, proof)
    assert _fails(v, 0, new, merkle.EMPTY_ROOT, r2, proof)

    # Other sizes, with their real roots: only if their proof is this one.
    o2 = data.draw(st.integers(1, len(leaves)))
    n2 = data.draw(st.integers(o2, len(leaves)))
    if (o2, n2) != (old, new) and ref.proof(o2, leaves[:n2]) != proof:
        assert _fails(v, o2, n2, ref.mth(leaves[:o2]), ref.mth(leaves[:n2]), proof)


@SETTINGS
@given(leaves=LEAVES, data=st.data())
def test_equal_sizes_need_equal_roots_and_no_proof(
    leaves: list[bytes], data: st.DataObject
) -> None:
    size = data.draw(st.integers(1, len(leaves)))
    r = ref.mth(leaves[:size])
    merkle.verify_consistency(size, size, r, r, [])
    assert _fails(merkle.verify_consistency, size, size, r, _flip(r, 0), [])
    assert _fails(merkle.verify_consistency, size, size, r, r, [r])


# -- Malformed input ---------------------------------------------------------


@SETTINGS
@given(
    leaf=st.binary(max_size=40),
    index=st.integers(-(2**65), 2**65),
    size=st.integers(-(2**65), 2**65),
    proof=st.lists(st.binary(max_size=40), max_size=70),
    root=st.binary(max_size=40),
)
def test_garbage_only_raises_remote_errors(
    leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes
) -> None:
    # Anything at all: it is refused with a remote error, never anything else.
    assert _fails(merkle.verify_inclusion, leaf, index, size, proof, root) or (
        len(leaf) == len(root) == 32 and all(len(p) == 32 for p in proof)
    )
    assert _fails(merkle.verify_consistency, index, size, leaf, root, proof) or (
        len(leaf) == len(root) == 32 and all(len(p) == 32 for p in proof)
    )
