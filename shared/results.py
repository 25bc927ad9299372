"""The one result schema (docs/DATA.md): summary, bins, person and frame records, the compliance rate,
and their JSON and CSV forms. The worker, the offline CLI, the web and the exports all use these.

Pure data: no database here (shared/result_docs.py stores it), no numpy (stats.py feeds plain numbers).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime

from bson import ObjectId

LABELS = ("masked", "unmasked", "incorrect")  # the classifier's classes, in its output order
KEYS = (*LABELS, "unknown")  # every face gets one of these
VIOLATIONS = ("unmasked", "incorrect")  # votes that are not compliant
BULKY = ("bins", "persons")  # parts of an analysis result stored in documents of their own
DETAILS = ("models", "settings")  # nested records the results page shows and the clips list does not
REJECTED = "rejected"  # a person's `status` when the tracker ruled it out (not counted in people totals)

FRAME_COLUMNS = ["frame", "t", "faces", *KEYS, "compliance"]
PERSON_COLUMNS = ["track_id", "status", "vote", "first_s", "last_s", "first_frame", "last_frame", "frames",
                  "masked_votes", "unmasked_votes", "incorrect_votes", "mean_p_mask", "best_frame",
                  "x1", "y1", "x2", "y2", "unknown_reason"]


def rate(masked: int, unmasked: int, incorrect: int) -> float | None:
    """Masked share of the decided ones (incorrect counts as not compliant); None when none decided."""
    decided = masked + unmasked + incorrect
    return round(masked / decided, 4) if decided else None


def rate_of(counts: dict) -> float | None:
    """rate() of a {masked, unmasked, incorrect, ...} counts dict."""
    return rate(counts.get("masked", 0), counts.get("unmasked", 0), counts.get("incorrect", 0))


def counts(masked: int = 0, unmasked: int = 0, incorrect: int = 0, unknown: int = 0) -> dict:
    """A frame's (or bin's) face counts: {faces, masked, unmasked, incorrect, unknown}."""
    return {"faces": masked + unmasked + incorrect + unknown, "masked": masked, "unmasked": unmasked,
            "incorrect": incorrect, "unknown": unknown}


def face_record(*, box, score: float, label: str, probs, track: int) -> dict:
    """One face of a frame: box [x1, y1, x2, y2] in input pixels, label name, probs (None: unclassified)."""
    known = probs is not None
    return {
        "box": [round(float(v), 1) for v in box],
        "score": round(float(score), 3),
        "label": label,
        "p_mask": round(float(probs[0]), 4) if known else None,
        "probs": [round(float(p), 4) for p in probs] if known else None,
        "track": int(track),
    }


def frame_record(frame: int, t: float, faces: list[dict], face_counts: dict) -> dict:
    """One analysed frame: index, time in seconds, faces (face_record) and their counts."""
    return {"frame": int(frame), "t": round(float(t), 4), "faces": faces, "counts": face_counts}


def bin_record(t: int, masked: int, unmasked: int, incorrect: int, unknown: int) -> dict:
    """One chart bin: its start in seconds, face-frame counts and their compliance rate."""
    return {"t": t, **counts(masked, unmasked, incorrect, unknown), "rate": rate(masked, unmasked, incorrect)}


def split(result: dict) -> tuple[dict, dict, list[dict], dict]:
    """(summary, bins, persons, details) of an analysis result: the summary is what the job document
    keeps (small and flat: every clips list decodes it), details are models and settings."""
    summary = {k: v for k, v in result.items() if k not in BULKY and k not in DETAILS}
    details = {k: result[k] for k in DETAILS if k in result}
    return summary, result.get("bins") or {}, list(result.get("persons") or []), details


def counted(person: dict) -> bool:
    """Whether a person counts in the people totals (rejected tracks are listed but not counted)."""
    return person.get("status") != REJECTED


def is_violation(person: dict) -> bool:
    """A counted person whose vote is not masked (unmasked or mask worn incorrectly)."""
    return counted(person) and person.get("vote") in VIOLATIONS


def violations(persons: Iterable[dict]) -> list[dict]:
    """The violations list of the results page: who, which vote, when, by first appearance."""
    out = [{"track_id": p.get("track_id"), "vote": p.get("vote"), "first_s": p.get("first_s"),
            "last_s": p.get("last_s"), "crop_id": p.get("crop_id")} for p in persons if is_violation(p)]
    return sorted(out, key=lambda v: (v["first_s"] is None, v["first_s"] or 0))


def frame_row(record: dict) -> list:
    """A frame record as a FRAME_COLUMNS row (compliance empty when no face was decided)."""
    c = record.get("counts") or {}
    r = rate_of(c)
    return [record["frame"], round(record.get("t") or 0.0, 3), c.get("faces", 0),
            *(c.get(k, 0) for k in KEYS), "" if r is None else r]


def person_row(person: dict) -> list:
    """A person record as a PERSON_COLUMNS row (absent values empty)."""
    votes = person.get("votes") or {}
    box = person.get("best_box") or [""] * 4

    def v(key):
        value = person.get(key)
        return "" if value is None else value

    return [v("track_id"), person.get("status") or "counted", v("vote"), v("first_s"), v("last_s"),
            v("first_frame"), v("last_frame"), v("frames"), *(votes.get(k, 0) for k in LABELS),
            v("mean_p_mask"), v("best_frame"), *box, v("unknown_reason")]


def csv_lines(rows: Iterable[list], every: int = 500) -> Iterator[str]:
    """CSV text of rows (the header is a row too), yielded every few hundred rows."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for n, row in enumerate(rows, 1):
        writer.writerow(row)
        if n % every == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    if buf.getvalue():
        yield buf.getvalue()


def _default(o):
    if isinstance(o, ObjectId):
        return str(o)
    if isinstance(o, datetime):
        return (o if o.tzinfo else o.replace(tzinfo=UTC)).isoformat()
    if isinstance(o, date):
        return o.isoformat()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def dumps(obj) -> str:
    """Compact ASCII JSON (ids and times as strings), also safe inside an HTML <script> element.

    ASCII keeps one byte per character, so stored text is sized by len(); escaping <, > and & keeps
    the same text embeddable in a page.
    """
    text = json.dumps(obj, default=_default, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
