"""The JSON bodies the relay reads and writes, as types: one source for the code and
its OpenAPI document.

Each body is a :class:`TypedDict`: the handlers build their answers as these
types (so mypy holds the code to them), and
:func:`backchannel.relay.openapi_schemas.component_schemas` generates the
document's ``components/schemas`` from the same types with pydantic, the
constraints written here once (``Annotated`` with pydantic's ``Field``). What
depends on a relay's settings (its cell size, batch and quota limits) is set
on the generated schemas by that function. The binary layouts of the batch
exchange are not JSON and are stated in the document's prose and in
``docs/spec/relay-api.md``.
"""

from __future__ import annotations

from typing import Annotated, Any, NotRequired

from pydantic import ConfigDict, Field, with_config
from typing_extensions import TypedDict

from backchannel.protocol.constants import MAX_OFFICERS
from backchannel.protocol.intake import REQUEST_CELL_SIZE
from backchannel.protocol.tenant_credential import MAX_CHAIN

_HEX64 = "^[0-9a-f]{64}$"

Slot = Annotated[str, Field(pattern=_HEX64, min_length=64, max_length=64)]
TenantId = Annotated[str, Field(pattern="^[a-z0-9-]{3,64}$", min_length=3, max_length=64)]
Hash = Annotated[str, Field(pattern=_HEX64, min_length=64, max_length=64)]
Proof = Annotated[list[Hash], Field(max_length=64)]
U63 = Annotated[int, Field(ge=0, le=(1 << 63) - 1)]
#: A tree size a proof or head can be asked for (the empty tree has none).
Size = Annotated[int, Field(ge=1, le=(1 << 63) - 1)]
NonNegative = Annotated[int, Field(ge=0)]
#: Standard base64 with its padding, as the relay decodes it.
Base64 = Annotated[
    str,
    Field(
        pattern="^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
        json_schema_extra={"contentEncoding": "base64"},
    ),
]
SignedHead = Annotated[
    str,
    Field(
        pattern="^[0-9a-f]+$",
        min_length=2 * 3422,
        max_length=2 * 3422,
        description="full signed head: hex of TreeHead (49 bytes) || Ed25519 (64) || "
        "ML-DSA-65 (3309) signature",
    ),
]
CompactHead = Annotated[
    str,
    Field(
        pattern="^[0-9a-f]{226}$",
        min_length=226,
        max_length=226,
        description="compact signed head: hex of TreeHead (49 bytes) || Ed25519 (64); "
        "the first 113 bytes of the full signed head of the same size",
    ),
]
#: A log leaf, hex: version u8 | batch_index u64 | batch_size u32 | batch_root [32] |
#: coarse_time u64.
Leaf = Annotated[
    str,
    Field(
        pattern="^[0-9a-f]{106}$",
        description="version u8 | batch_index u64 | batch_size u32 | batch_root [32] | "
        "coarse_time u64",
    ),
]


def base64_of(size: int) -> Any:
    """Standard base64 of exactly ``size`` bytes: the pattern says which strings
    are (the padding fixes the length decoded), as the relay decodes them."""
    full, rest = divmod(size, 3)
    tail = ("", "[A-Za-z0-9+/]{2}==", "[A-Za-z0-9+/]{3}=")[rest]
    return Field(
        pattern=f"^[A-Za-z0-9+/]{{{4 * full}}}{tail}$",
        min_length=4 * ((size + 2) // 3),
        max_length=4 * ((size + 2) // 3),
        json_schema_extra={"contentEncoding": "base64"},
        description=f"standard base64 of exactly {size} bytes",
    )


_closed = with_config(ConfigDict(extra="forbid"))

# -- errors, tenants, cells --------------------------------------------------------------


@_closed
class Error(TypedDict):
    """Every error answer."""

    error: Annotated[str, Field(description="What to do next")]


@_closed
class TenantRequest(TypedDict):
    tenant_id: TenantId
    credential: Annotated[
        str,
        Field(
            pattern="^[A-Za-z0-9_-]{43}=?$",
            description="base64url of 32 random bytes; the relay keeps its SHA-256",
        ),
    ]
    #: At most the relay's ``max_quota_cells`` (set on the schema).
    quota_cells: NotRequired[Annotated[int, Field(ge=1)]]


@_closed
class Tenant(TypedDict):
    tenant_id: TenantId
    quota_cells: int


@_closed
class CellLog(TypedDict):
    """Where a cell sits in the relay log."""

    leaf_index: Annotated[U63, Field(description="the batch's leaf in the log")]
    batch_position: NonNegative
    batch_size: Annotated[int, Field(ge=1)]
    batch_proof: Annotated[Proof, Field(description="cell entry -> batch root (RFC 9162 path)")]
    inclusion_proof: Annotated[Proof, Field(description="leaf -> the signed head's root")]


@_closed
class DepositLog(CellLog):
    """Where the cell sits in the relay log, with proofs against signed_head.
    Absent only for cells stored before the relay kept a log."""

    signed_head: CompactHead


@_closed
class Deposit(TypedDict):
    cell_id: Annotated[str, Field(pattern=_HEX64, description="SHA-256 of the cell")]
    created: bool
    log: NotRequired[DepositLog]


@_closed
class SlotList(TypedDict):
    #: At most the relay's ``max_batch`` (set on the schema).
    slots: list[Slot]


@_closed
class CellsLog(TypedDict):
    """Each returned cell's place in the log, against signed_head."""

    signed_head: CompactHead
    cells: dict[Slot, CellLog]
    spent: NotRequired[
        Annotated[
            list[Slot],
            Field(
                description="asked slots whose cells the tenant acknowledged: no cell, not "
                "empty, closed to any other cell until retention"
            ),
        ]
    ]
    absent: NotRequired[
        Annotated[
            str,
            Field(
                pattern="^([0-9a-f]{2})+$",
                description="present when a slot asked for held no cell: the relay's signed "
                "statement of absence (docs/spec/relay-log-v1.md §3.2) of those slots, the "
                "spent ones in its spent list, at signed_head",
            ),
        ]
    ]


@_closed
class Cells(TypedDict):
    #: Each cell in standard base64 (its size is set on the schema).
    cells: dict[Slot, Annotated[str, Field(json_schema_extra={"contentEncoding": "base64"})]]
    log: CellsLog


@_closed
class Removed(TypedDict):
    removed: NonNegative


@_closed
class Rotation(TypedDict):
    """docs/spec/relay-api.md, 'Credential rotation'."""

    chain: Annotated[
        list[Base64],
        Field(
            min_length=1,
            max_length=MAX_CHAIN,
            description="the mission's signed rosters from its genesis, base64 (one that "
            "does not decode authorizes nothing: 403)",
        ),
    ]
    seq: Annotated[int, Field(ge=0, le=2**32 - 1)]
    credential_hash: Annotated[
        str,
        Field(
            pattern="^[0-9a-fA-F]{64}$",
            description="SHA-256 of the new credential's 32 bytes, hex",
        ),
    ]
    signatures: Annotated[
        list[tuple[Annotated[str, Field(pattern="^[0-9a-fA-F]{32}$")], Base64]],
        Field(
            min_length=1,
            max_length=MAX_OFFICERS,
            description="[officer id hex, hybrid signature base64] of k officers; one that "
            "does not verify (of the wrong length included) counts for nothing",
        ),
    ]


@_closed
class Rotated(TypedDict):
    rotated: Annotated[bool, Field(description="false: this very rotation was already in force")]
    roster_version: NonNegative
    seq: NonNegative


# -- the transparency log ------------------------------------------------------------------


@_closed
class LogKey(TypedDict):
    ed25519: Annotated[str, Field(pattern=_HEX64)]
    mldsa65: Annotated[str, Field(pattern="^[0-9a-f]{3904}$")]
    fingerprint: Annotated[Hash, Field(description="SHA-256(ed25519 || mldsa65)")]
    checkpoint_vkey: Annotated[
        str,
        Field(
            pattern="^[!-*,-~]{1,255}\\+[0-9a-f]{8}\\+[A-Za-z0-9+/]{44}$",
            description="the verifier key (c2sp.org/signed-note) of the log's checkpoints: "
            "name (the origin) + key ID + base64(0x01 || Ed25519 key)",
        ),
    ]
    checkpoint_binding: Annotated[
        str,
        Field(
            pattern="^[0-9a-f]{128}$",
            description="Ed25519 signature of the log key over "
            "'backchannel/v1/sig/checkpoint-key' || checkpoint public key || origin",
        ),
    ]


@_closed
class LogHead(TypedDict):
    size: U63
    root: Hash
    timestamp: NonNegative
    signed_head: SignedHead
    compact_head: CompactHead


@_closed
class LogHeadAt(TypedDict):
    size: U63
    root: Hash
    timestamp: NonNegative
    compact_head: CompactHead


@_closed
class EntryProof(TypedDict):
    leaf_index: U63
    batch_position: U63
    tree_size: U63
    leaf: Annotated[str, Field(pattern="^[0-9a-f]{106}$")]
    batch_proof: Proof
    inclusion_proof: Proof


@_closed
class LogLeaf(TypedDict):
    leaf_index: U63
    leaf: Leaf


@_closed
class InclusionProof(TypedDict):
    leaf_index: U63
    tree_size: U63
    proof: Proof


@_closed
class ConsistencyProof(TypedDict):
    first: U63
    second: U63
    proof: Proof


# -- the relay itself ----------------------------------------------------------------------


@_closed
class Info(TypedDict):
    #: Both are constants of one relay (set on the schema).
    cell_size: int
    version: str
    max_batch: int


@_closed
class Status(TypedDict):
    status: str


# -- the public intake (relay/intake.py) ---------------------------------------------------


@_closed
class IntakePow(TypedDict):
    """Leading zero bits, and the current time bucket."""

    bits: Annotated[int, Field(ge=0, le=32)]
    bucket: U63
    bucket_seconds: Annotated[int, Field(ge=1)]


@_closed
class IntakeSubmission(TypedDict):
    cell: Annotated[str, base64_of(REQUEST_CELL_SIZE)]
    bucket: U63
    nonce: Annotated[int, Field(ge=0, le=(1 << 64) - 1)]


@_closed
class IntakeStored(TypedDict):
    stored: bool


@_closed
class IntakeAnswer(TypedDict):
    #: Standard base64 of one cell of the tenant (its size is set on the schema).
    cell: str


@_closed
class IntakeFetch(TypedDict):
    after: U63
    limit: NotRequired[Annotated[int, Field(ge=1, le=256)]]
    open: NotRequired[
        Annotated[
            bool | None,
            Field(description="the state the intake is to be in; null or absent: no change"),
        ]
    ]


@_closed
class IntakeRequest(TypedDict):
    seq: U63
    cell: Annotated[str, base64_of(REQUEST_CELL_SIZE)]


@_closed
class IntakeRequests(TypedDict):
    requests: list[IntakeRequest]


#: Every named schema of the document, in its order.
COMPONENTS: tuple[type, ...] = (
    Error,
    TenantRequest,
    Tenant,
    Deposit,
    DepositLog,
    CellLog,
    LogKey,
    LogHead,
    LogHeadAt,
    EntryProof,
    LogLeaf,
    InclusionProof,
    ConsistencyProof,
    SlotList,
    Cells,
    CellsLog,
    Rotation,
    Rotated,
    Removed,
    Info,
    Status,
    IntakePow,
    IntakeSubmission,
    IntakeStored,
    IntakeAnswer,
    IntakeFetch,
    IntakeRequest,
    IntakeRequests,
)
