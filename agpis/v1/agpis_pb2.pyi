from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_UNSPECIFIED: _ClassVar[Status]
    QUEUED: _ClassVar[Status]
    REJECTED: _ClassVar[Status]
    TERMINATED: _ClassVar[Status]

class ReviewState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVIEW_STATE_UNSPECIFIED: _ClassVar[ReviewState]
    NOT_SENT: _ClassVar[ReviewState]
    ENQUEUED: _ClassVar[ReviewState]
    ALREADY_ENQUEUED: _ClassVar[ReviewState]
    PENDING: _ClassVar[ReviewState]
STATUS_UNSPECIFIED: Status
QUEUED: Status
REJECTED: Status
TERMINATED: Status
REVIEW_STATE_UNSPECIFIED: ReviewState
NOT_SENT: ReviewState
ENQUEUED: ReviewState
ALREADY_ENQUEUED: ReviewState
PENDING: ReviewState

class Candidate(_message.Message):
    __slots__ = ("id", "data", "uri")
    ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    id: str
    data: bytes
    uri: str
    def __init__(self, id: _Optional[str] = ..., data: _Optional[bytes] = ..., uri: _Optional[str] = ...) -> None: ...

class Options(_message.Message):
    __slots__ = ("sequence_length", "threshold", "explain", "skip_review")
    SEQUENCE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    SKIP_REVIEW_FIELD_NUMBER: _ClassVar[int]
    sequence_length: int
    threshold: float
    explain: bool
    skip_review: bool
    def __init__(self, sequence_length: _Optional[int] = ..., threshold: _Optional[float] = ..., explain: _Optional[bool] = ..., skip_review: _Optional[bool] = ...) -> None: ...

class GenerateSequenceRequest(_message.Message):
    __slots__ = ("product_id", "title", "category", "candidates", "options")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    title: str
    category: str
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    options: Options
    def __init__(self, product_id: _Optional[str] = ..., title: _Optional[str] = ..., category: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., options: _Optional[_Union[Options, _Mapping]] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("x0", "y0", "x1", "y1")
    X0_FIELD_NUMBER: _ClassVar[int]
    Y0_FIELD_NUMBER: _ClassVar[int]
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    x0: int
    y0: int
    x1: int
    y1: int
    def __init__(self, x0: _Optional[int] = ..., y0: _Optional[int] = ..., x1: _Optional[int] = ..., y1: _Optional[int] = ...) -> None: ...

class Finding(_message.Message):
    __slots__ = ("rule", "score", "box", "source", "message")
    RULE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    rule: str
    score: float
    box: Box
    source: str
    message: str
    def __init__(self, rule: _Optional[str] = ..., score: _Optional[float] = ..., box: _Optional[_Union[Box, _Mapping]] = ..., source: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class CandidateDiagnostics(_message.Message):
    __slots__ = ("id", "p_primary", "p_noncompliant", "findings", "width", "height")
    ID_FIELD_NUMBER: _ClassVar[int]
    P_PRIMARY_FIELD_NUMBER: _ClassVar[int]
    P_NONCOMPLIANT_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    id: str
    p_primary: float
    p_noncompliant: float
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    width: int
    height: int
    def __init__(self, id: _Optional[str] = ..., p_primary: _Optional[float] = ..., p_noncompliant: _Optional[float] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class BoxMatch(_message.Message):
    __slots__ = ("box_a", "box_b", "similarity")
    BOX_A_FIELD_NUMBER: _ClassVar[int]
    BOX_B_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    box_a: Box
    box_b: Box
    similarity: float
    def __init__(self, box_a: _Optional[_Union[Box, _Mapping]] = ..., box_b: _Optional[_Union[Box, _Mapping]] = ..., similarity: _Optional[float] = ...) -> None: ...

class DuplicatePair(_message.Message):
    __slots__ = ("id_a", "id_b", "score", "matches", "removed_id")
    ID_A_FIELD_NUMBER: _ClassVar[int]
    ID_B_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    REMOVED_ID_FIELD_NUMBER: _ClassVar[int]
    id_a: str
    id_b: str
    score: float
    matches: _containers.RepeatedCompositeFieldContainer[BoxMatch]
    removed_id: str
    def __init__(self, id_a: _Optional[str] = ..., id_b: _Optional[str] = ..., score: _Optional[float] = ..., matches: _Optional[_Iterable[_Union[BoxMatch, _Mapping]]] = ..., removed_id: _Optional[str] = ...) -> None: ...

class RemovedCandidate(_message.Message):
    __slots__ = ("id", "rule", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    rule: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., rule: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ScoredSequence(_message.Message):
    __slots__ = ("ids", "p_qualified", "predicted_rule")
    IDS_FIELD_NUMBER: _ClassVar[int]
    P_QUALIFIED_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_RULE_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    p_qualified: float
    predicted_rule: str
    def __init__(self, ids: _Optional[_Iterable[str]] = ..., p_qualified: _Optional[float] = ..., predicted_rule: _Optional[str] = ...) -> None: ...

class ReviewEntry(_message.Message):
    __slots__ = ("state", "entry_id", "queue")
    STATE_FIELD_NUMBER: _ClassVar[int]
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    state: ReviewState
    entry_id: str
    queue: str
    def __init__(self, state: _Optional[_Union[ReviewState, str]] = ..., entry_id: _Optional[str] = ..., queue: _Optional[str] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class GenerateSequenceResponse(_message.Message):
    __slots__ = ("product_id", "status", "p_qualified", "threshold", "sequence", "candidates", "duplicates", "removed", "terminated_reason", "predicted_rule", "feedback", "review", "model_versions", "timings_ms", "alternatives", "error", "uncertain", "novelty")
    class ModelVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class TimingsMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    P_QUALIFIED_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    TERMINATED_REASON_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_RULE_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_MS_FIELD_NUMBER: _ClassVar[int]
    ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    UNCERTAIN_FIELD_NUMBER: _ClassVar[int]
    NOVELTY_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    status: Status
    p_qualified: float
    threshold: float
    sequence: _containers.RepeatedScalarFieldContainer[str]
    candidates: _containers.RepeatedCompositeFieldContainer[CandidateDiagnostics]
    duplicates: _containers.RepeatedCompositeFieldContainer[DuplicatePair]
    removed: _containers.RepeatedCompositeFieldContainer[RemovedCandidate]
    terminated_reason: str
    predicted_rule: str
    feedback: str
    review: ReviewEntry
    model_versions: _containers.ScalarMap[str, str]
    timings_ms: _containers.ScalarMap[str, float]
    alternatives: _containers.RepeatedCompositeFieldContainer[ScoredSequence]
    error: Error
    uncertain: bool
    novelty: float
    def __init__(self, product_id: _Optional[str] = ..., status: _Optional[_Union[Status, str]] = ..., p_qualified: _Optional[float] = ..., threshold: _Optional[float] = ..., sequence: _Optional[_Iterable[str]] = ..., candidates: _Optional[_Iterable[_Union[CandidateDiagnostics, _Mapping]]] = ..., duplicates: _Optional[_Iterable[_Union[DuplicatePair, _Mapping]]] = ..., removed: _Optional[_Iterable[_Union[RemovedCandidate, _Mapping]]] = ..., terminated_reason: _Optional[str] = ..., predicted_rule: _Optional[str] = ..., feedback: _Optional[str] = ..., review: _Optional[_Union[ReviewEntry, _Mapping]] = ..., model_versions: _Optional[_Mapping[str, str]] = ..., timings_ms: _Optional[_Mapping[str, float]] = ..., alternatives: _Optional[_Iterable[_Union[ScoredSequence, _Mapping]]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., uncertain: _Optional[bool] = ..., novelty: _Optional[float] = ...) -> None: ...
