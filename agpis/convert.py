"""Between the proto messages and the domain objects; nothing else.

The JSON that `agpis generate --json` prints is the proto's JSON form, so the CLI, the Python
API (`Decision.to_json`) and the gRPC service share one contract.
"""
from __future__ import annotations

from agpis.v1 import agpis_pb2 as pb
from stage1.types import Box


def _box(box: Box | None, scale: float = 1.0) -> pb.Box | None:
    if box is None:
        return None
    return pb.Box(**{k: int(round(v * scale)) for k, v in zip(("x0", "y0", "x1", "y1"), box)})


def decision_to_proto(d) -> pb.GenerateSequenceResponse:
    resp = pb.GenerateSequenceResponse(
        product_id=d.product_id, status=pb.Status.Value(d.status), p_qualified=d.p_qualified,
        threshold=d.threshold, sequence=d.sequence, terminated_reason=d.terminated_reason,
        predicted_rule=d.predicted_rule, feedback=d.feedback,
        review=pb.ReviewEntry(state=pb.ReviewState.Value(d.review.state), entry_id=d.review.entry_id,
                              queue=d.review.queue),
        model_versions=d.model_versions, timings_ms={k: round(v, 3) for k, v in d.timings_ms.items()},
        removed=[pb.RemovedCandidate(id=r.id, rule=r.rule, reason=r.reason) for r in d.removed],
        uncertain=d.uncertain, novelty=d.novelty,
    )
    for pair in d.duplicates:
        resp.duplicates.append(pb.DuplicatePair(
            id_a=pair.id_a, id_b=pair.id_b, score=pair.score, removed_id=pair.removed_id,
            matches=[pb.BoxMatch(box_a=_box(m.box_a), box_b=_box(m.box_b), similarity=m.similarity)
                     for m in pair.matches] if d.explain else []))
    if d.explain:
        for r in d.reports:
            w, h = d.sizes.get(r.id, (0, 0))
            resp.candidates.append(pb.CandidateDiagnostics(
                id=r.id, p_primary=r.p_primary, p_noncompliant=r.p_noncompliant, width=w, height=h,
                findings=[pb.Finding(rule=f.rule, score=f.score, box=_box(f.box), source=f.source,
                                     message=f.message) for f in r.findings]))
        resp.alternatives.extend(pb.ScoredSequence(ids=s.ids, p_qualified=s.p_qualified, predicted_rule=s.rule)
                                 for s in d.alternatives)
    return resp


def error_response(product_id: str, code: str, message: str) -> pb.GenerateSequenceResponse:
    return pb.GenerateSequenceResponse(product_id=product_id, error=pb.Error(code=code, message=message))


def describe(resp: pb.GenerateSequenceResponse, indent: str = "  ") -> list[str]:
    """A response as a few lines a person can read (CLI and demo), after a head line of the caller's."""
    status = pb.Status.Name(resp.status)
    out = []
    if resp.sequence:
        out.append(f"{indent}sequence: {' > '.join(resp.sequence)}")
    if resp.terminated_reason:
        out.append(f"{indent}terminated: {resp.terminated_reason}: {resp.feedback}")
    for r in resp.removed:
        out.append(f"{indent}removed {r.id}: {r.rule} ({r.reason})")
    if status == "REJECTED" and resp.predicted_rule:
        out.append(f"{indent}why: {resp.predicted_rule}: {resp.feedback}")
    if resp.uncertain:
        out.append(f"{indent}uncertain: images unlike the training data (novelty {resp.novelty:.3f}); stage 2 "
                   f"would reject ({resp.predicted_rule}), so reviewers decide")
    if resp.review.state:
        out.append(f"{indent}review: {pb.ReviewState.Name(resp.review.state)} {resp.review.entry_id}".rstrip())
    t = resp.timings_ms
    out.append(f"{indent}time: total {t.get('total', 0):.0f} ms (decode {t.get('decode', 0):.0f}, "
               f"stage1 {t.get('stage1', 0):.0f}, stage2 {t.get('stage2', 0):.0f}, queue {t.get('queue', 0):.0f})")
    return out
