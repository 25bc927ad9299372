"""The OpenAPI 3 document of /api/v1 (written by hand; a test checks it lists exactly the routes)."""

from __future__ import annotations

from web.exports import KINDS


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERR = {
    code: {"$ref": f"#/components/responses/{name}"}
    for code, name in [("400", "BadRequest"), ("401", "Unauthorized"), ("404", "NotFound")]
}
CLIP_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{24}$"},
    "description": "The clip's id (24 hex digits).",
}
TRACK = {
    "name": "track_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer"},
    "description": "A person's track id from the results.",
}
NOT_READY = {"409": {"$ref": "#/components/responses/Conflict"}}


def _op(
    summary: str,
    responses: dict,
    *,
    params=(),
    body: dict | None = None,
    tag: str = "clips",
    errors: dict | None = None,
    public: bool = False,
) -> dict:
    op = {
        "summary": summary,
        "tags": [tag],
        "parameters": list(params),
        "responses": {**responses, **(errors if errors is not None else ERR)},
    }
    if body:
        op["requestBody"] = body
    if public:
        op["security"] = []
    return op


def spec() -> dict:
    """The document served at /api/v1/openapi.json."""
    page = {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Maskwatch API",
            "version": "1",
            "description": "Upload CCTV clips and images, follow their analysis, read mask-compliance "
            "results. Authenticate with a token made on the Settings page: "
            "`Authorization: Bearer mw_...`. Errors are JSON: "
            '`{"error": "<code>", "message": "<sentence>"}`.',
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": {
            "/openapi.json": {
                "get": _op(
                    "This document",
                    {"200": {"description": "OpenAPI 3 JSON"}},
                    tag="meta",
                    errors={},
                    public=True,
                )
            },
            "/me": {
                "get": _op(
                    "The authenticated user",
                    {"200": _json(_ref("User"), "The user")},
                    tag="meta",
                    errors={"401": ERR["401"]},
                )
            },
            "/clips": {
                "get": _op(
                    "List clips, newest first (admins: everyone's)",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {"clips": {"type": "array", "items": _ref("Clip")}},
                            },
                            "The clips",
                        )
                    },
                    params=[
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
                        }
                    ],
                ),
                "post": _op(
                    "Upload videos or images (each becomes a clip)",
                    {
                        "201": _json(_ref("UploadResult"), "Stored and queued"),
                        "400": {"description": "Cut short, or not matching X-Content-SHA256: nothing stored"},
                        "413": {"$ref": "#/components/responses/TooLarge"},
                        "415": {"$ref": "#/components/responses/Unsupported"},
                    },
                    params=[
                        {
                            "name": "filename",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "Name of a raw-body upload.",
                        },
                        {
                            "name": "X-Content-SHA256",
                            "in": "header",
                            "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                            "description": "sha256 of a raw-body upload: a mismatch stores nothing (400). "
                            "A raw body shorter than its Content-Length (a dropped connection) stores "
                            "nothing either.",
                        },
                    ],
                    body={
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "file": {
                                            "type": "array",
                                            "items": {"type": "string", "format": "binary"},
                                        }
                                    },
                                }
                            },
                            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                        },
                    },
                ),
            },
            "/clips/{id}": {
                "get": _op(
                    "A clip's state, progress and summary",
                    {"200": _json(_ref("Clip"), "The clip")},
                    params=[CLIP_ID],
                ),
                "delete": _op(
                    "Delete a clip, its files and statistics",
                    {"204": {"description": "Deleted"}, **NOT_READY},
                    params=[CLIP_ID],
                ),
            },
            "/clips/{id}/cancel": {
                "post": _op(
                    "Cancel a queued or running clip",
                    {"202": _json(_ref("Clip"), "Cancelling"), **NOT_READY},
                    params=[CLIP_ID],
                )
            },
            "/clips/{id}/retry": {
                "post": _op(
                    "Queue a failed or cancelled clip again",
                    {"202": _json(_ref("Clip"), "Queued"), **NOT_READY},
                    params=[CLIP_ID],
                )
            },
            "/clips/{id}/results": {
                "get": _op(
                    "Everything the results page shows: summary, bins, persons, violations",
                    {"200": _json(_ref("Results"), "The results"), **NOT_READY},
                    params=[CLIP_ID],
                )
            },
            "/clips/{id}/bins": {
                "get": _op(
                    "The compliance timeline in one unit",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "unit": {"type": "string"},
                                    "bins": {"type": "array", "items": _ref("Bin")},
                                },
                            },
                            "Bins",
                        ),
                        **NOT_READY,
                    },
                    params=[
                        CLIP_ID,
                        {
                            "name": "unit",
                            "in": "query",
                            "schema": {"type": "string", "enum": ["second", "minute"]},
                        },
                    ],
                )
            },
            "/clips/{id}/persons": {
                "get": _op(
                    "One page (100) of the per-person ledger",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "page": {"type": "integer"},
                                    "pages": {"type": "integer"},
                                    "total": {"type": "integer"},
                                    "persons": {"type": "array", "items": _ref("Person")},
                                },
                            },
                            "People",
                        ),
                        **NOT_READY,
                    },
                    params=[CLIP_ID, page],
                )
            },
            "/clips/{id}/frames": {
                "get": _op(
                    "Per-frame statistics, paged by frame number",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "start": {"type": "integer"},
                                    "limit": {"type": "integer"},
                                    "total": {"type": "integer"},
                                    "frames": {"type": "array", "items": _ref("Frame")},
                                    "next": {"type": "string", "nullable": True},
                                },
                            },
                            "Frames",
                        ),
                        **NOT_READY,
                    },
                    params=[
                        CLIP_ID,
                        {
                            "name": "start",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "default": 0},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 500},
                        },
                    ],
                )
            },
            "/clips/{id}/download/{what}": {
                "get": _op(
                    "A download: annotated output, original upload, per-frame CSV/JSON, per-person CSV",
                    {
                        "200": {"description": "The file (streamed)"},
                        "206": {"description": "A byte range of a media file"},
                        **NOT_READY,
                    },
                    params=[
                        CLIP_ID,
                        {
                            "name": "what",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": list(KINDS)},
                        },
                        {"name": "Range", "in": "header", "schema": {"type": "string"}},
                    ],
                )
            },
            "/clips/{id}/audit": {
                "get": _op(
                    "Who viewed, downloaded, exported or deleted the clip, newest first (50 a page)",
                    {"200": _json(_ref("AuditPage"), "One page of the clip's audit trail")},
                    params=[CLIP_ID, page],
                )
            },
            "/clips/{id}/anonymised": {
                "get": _op(
                    "The anonymised copy (faces blurred): none, pending, running, done (with URL), failed",
                    {"200": _json(_ref("Anonymised"), "Its state")},
                    params=[CLIP_ID],
                ),
                "post": _op(
                    "Ask a worker for a copy of the finished clip with every face blurred, checked face-free "
                    '(body {"boxes": true}: the compliance boxes drawn on it as outlines, without text)',
                    {"202": _json(_ref("Anonymised"), "Pending"), **NOT_READY,
                     "503": {"$ref": "#/components/responses/Unavailable"}},
                    params=[CLIP_ID],
                    body={"required": False, "content": {"application/json": {"schema": {
                        "type": "object", "properties": {"boxes": {"type": "boolean"}}}}}},
                ),
            },
            "/clips/{id}/privacy": {
                "put": _op(
                    "Change the clip's retention period (days from upload; null: kept until deleted), "
                    "whether only its footage is deleted then (keep_statistics), and anonymised only (no "
                    "face, original or annotated video served; the video route plays the anonymised copy)",
                    {"200": _json(_ref("Clip"), "The clip"), **NOT_READY},
                    params=[CLIP_ID],
                    body={"required": True, "content": {"application/json": {"schema": _ref("Privacy")}}},
                )
            },
            "/clips/{id}/files/{file_id}": {
                "get": _op(
                    "A face crop or explanation image of the clip (PNG/JPEG)",
                    {"200": {"description": "The image"}},
                    params=[
                        CLIP_ID,
                        {"name": "file_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    ],
                )
            },
            "/clips/{id}/persons/{track_id}/explanation": {
                "get": _op(
                    "The 'explain this face' state of a person",
                    {"200": _json(_ref("Explanation"), "The explanation")},
                    params=[CLIP_ID, TRACK],
                ),
                "post": _op(
                    "Ask for Grad-CAM and occlusion maps of a person's best face (?force=1 makes a new one)",
                    {
                        "200": _json(_ref("Explanation"), "Already done"),
                        "202": _json(_ref("Explanation"), "Pending"),
                        **NOT_READY,
                        "503": {"$ref": "#/components/responses/Unavailable"},
                    },
                    params=[CLIP_ID, TRACK],
                ),
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from the Settings page (mw_...).",
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "maskwatch_session",
                    "description": "The web session; writes also need the X-CSRFToken header.",
                },
            },
            "responses": {
                name: _json(_ref("Error"), text)
                for name, text in [
                    ("BadRequest", "Malformed request or parameter"),
                    ("Unauthorized", "No or bad credentials"),
                    ("NotFound", "No such clip, or not yours"),
                    ("Conflict", "Not possible in the clip's state"),
                    ("TooLarge", "Over the upload limit"),
                    ("Unsupported", "Not a supported video or image"),
                    ("Unavailable", "The job queue or database is unreachable"),
                ]
            },
            "schemas": _schemas(),
        },
    }


def _schemas() -> dict:
    counts = {
        "type": "object",
        "properties": {
            k: {"type": "integer"} for k in ("total", "masked", "unmasked", "incorrect", "unknown")
        },
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        },
        "User": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "username": {"type": "string"},
                "is_admin": {"type": "boolean"},
            },
        },
        "Clip": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "filename": {"type": "string"},
                "kind": {"type": "string", "enum": ["video", "image"]},
                "status": {
                    "type": "string",
                    "enum": ["queued", "running", "succeeded", "failed", "cancelled"],
                },
                "progress": {"type": "number"},
                "eta_s": {"type": "number", "nullable": True},
                "error": {"type": "string", "nullable": True},
                "retryable": {"type": "boolean",
                              "description": "false when the file itself failed (too long, too large, "
                              "undecodable): retry is refused"},
                "size": {"type": "integer"},
                "created_at": {"type": "string", "format": "date-time"},
                "summary": {
                    "type": "object",
                    "nullable": True,
                    "properties": {
                        "frames": {"type": "integer"},
                        "duration_s": {"type": "number"},
                        "compliance_rate": {"type": "number", "nullable": True},
                        "people": counts,
                        "face_frames": counts,
                    },
                },
                "privacy": _ref("Privacy"),
                "urls": {"type": "object", "additionalProperties": True},
            },
        },
        "Privacy": {
            "type": "object",
            "properties": {
                "retention_days": {"type": "number", "nullable": True},
                "keep_statistics": {"type": "boolean"},
                "delete_at": {"type": "string", "format": "date-time", "nullable": True, "readOnly": True},
                "footage_deleted_at": {"type": "string", "format": "date-time", "nullable": True,
                                       "readOnly": True},
                "anonymised_only": {"type": "boolean"},
            },
        },
        "UploadResult": {
            "type": "object",
            "properties": {
                "clips": {"type": "array", "items": _ref("Clip")},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "filename": {"type": "string"},
                            "error": {"type": "string"},
                            "message": {"type": "string"},
                        },
                    },
                },
            },
        },
        "Bin": {
            "type": "object",
            "properties": {
                "t": {"type": "number"},
                "faces": {"type": "integer"},
                "masked": {"type": "integer"},
                "unmasked": {"type": "integer"},
                "incorrect": {"type": "integer"},
                "unknown": {"type": "integer"},
                "rate": {"type": "number", "nullable": True},
            },
        },
        "Person": {
            "type": "object",
            "properties": {
                "track_id": {"type": "integer"},
                "first_s": {"type": "number"},
                "last_s": {"type": "number"},
                "first_frame": {"type": "integer"},
                "last_frame": {"type": "integer"},
                "frames": {"type": "integer"},
                "vote": {"type": "string", "enum": ["masked", "unmasked", "incorrect", "unknown"]},
                "votes": {"type": "object"},
                "mean_p_mask": {"type": "number", "nullable": True},
                "crop_id": {"type": "string", "nullable": True},
                "best_frame": {"type": "integer"},
                "best_box": {"type": "array", "items": {"type": "number"}},
            },
        },
        "Frame": {
            "type": "object",
            "properties": {
                "frame": {"type": "integer"},
                "t": {"type": "number"},
                "faces": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "box": {"type": "array", "items": {"type": "number"}},
                            "score": {"type": "number"},
                            "label": {"type": "string"},
                            "p_mask": {"type": "number"},
                            "probs": {"type": "array", "items": {"type": "number"}},
                            "track": {"type": "integer"},
                        },
                    },
                },
                "counts": {"type": "object"},
            },
        },
        "Results": {
            "type": "object",
            "properties": {
                "clip": _ref("Clip"),
                "summary": {"type": "object"},
                "bins": {
                    "type": "object",
                    "properties": {
                        "second": {"type": "array", "items": _ref("Bin")},
                        "minute": {"type": "array", "items": _ref("Bin")},
                    },
                },
                "persons": {"type": "array", "items": _ref("Person")},
                "violations": {"type": "array", "items": {"type": "object"}},
            },
        },
        "AuditPage": {
            "type": "object",
            "properties": {
                "clip": {"type": "string"},
                "page": {"type": "integer"},
                "next": {"type": "string", "nullable": True},
                "entries": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "at": {"type": "string", "format": "date-time"},
                            "action": {"type": "string",
                                       "enum": ["view", "download", "export", "delete", "account_delete"]},
                            "detail": {"type": "string"},
                            "user": {"type": "object", "properties": {"id": {"type": "string"},
                                                                      "username": {"type": "string"}}},
                            "address": {"type": "string", "nullable": True},
                            "user_agent": {"type": "string"},
                            "via": {"type": "string", "enum": ["page", "api"]},
                            "clip": {"type": "object", "properties": {"id": {"type": "string"},
                                                                      "filename": {"type": "string"},
                                                                      "owner": {"type": "string"}}},
                        },
                    },
                },
            },
        },
        "Anonymised": {
            "type": "object",
            "properties": {
                "status": {"type": "string", "enum": ["none", "pending", "running", "done", "failed"]},
                "progress": {"type": "number"},
                "error": {"type": "string"},
                "url": {"type": "string", "description": "download of the copy (done)"},
                "requested_at": {"type": "string"},
                "finished_at": {"type": "string"},
            },
        },
        "Explanation": {
            "type": "object",
            "properties": {
                "track_id": {"type": "integer"},
                "status": {"type": "string", "enum": ["none", "pending", "done", "failed"]},
                "label": {"type": "string"},
                "probs": {"type": "array", "items": {"type": "number"}},
                "crop_url": {"type": "string"},
                "gradcam_url": {"type": "string"},
                "occlusion_url": {"type": "string"},
                "error": {"type": "string"},
            },
        },
    }
