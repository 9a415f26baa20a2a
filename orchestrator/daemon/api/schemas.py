"""The API's shapes: the schemas of the OpenAPI document (:mod:`.document`), by name."""

from __future__ import annotations

from typing import Any

from ...model.states import JobState, RunState

NULLABLE_STRING = {"type": ["string", "null"]}
TIME = {"type": ["string", "null"], "format": "date-time"}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "field"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": NULLABLE_STRING,
                },
            }
        },
    },
    "JobGraph": {
        "type": "object",
        "required": ["vertices", "edges"],
        "properties": {
            "vertices": {"type": "array", "items": {"type": "string"}},
            "edges": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["source", "target"],
                    "properties": {"source": {"type": "string"}, "target": {"type": "string"}},
                },
            },
        },
    },
    "DagSummary": {
        "type": "object",
        "required": ["name", "jobs", "file", "schedule", "paused", "next", "lastRun"],
        "properties": {
            "name": {"type": "string"},
            "jobs": {"type": "integer", "minimum": 0},
            "file": {"type": "string"},
            "schedule": {"type": ["object", "null"]},
            "paused": {"type": "boolean"},
            "next": {"type": "array", "items": {"type": "string", "format": "date-time"}},
            "lastRun": {
                "oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/RunSummary"}],
            },
        },
    },
    "LoadError": {
        "type": "object",
        "required": ["file", "message"],
        "properties": {"file": {"type": "string"}, "message": {"type": "string"}},
    },
    "DagList": {
        "type": "object",
        "required": ["data", "errors"],
        "properties": {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/DagSummary"}},
            "errors": {"type": "array", "items": {"$ref": "#/components/schemas/LoadError"}},
        },
    },
    "Dag": {
        "allOf": [
            {"$ref": "#/components/schemas/DagSummary"},
            {
                "type": "object",
                "required": ["definition", "jobGraph"],
                "properties": {
                    "definition": {"type": "object"},
                    "jobGraph": {"$ref": "#/components/schemas/JobGraph"},
                },
            },
        ]
    },
    "TriggerRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "params": {
                "type": "object",
                "maxProperties": 100,
                "additionalProperties": {
                    "type": ["string", "number", "integer", "boolean", "null"],
                },
            }
        },
    },
    "JobGroup": {
        "type": "object",
        "description": "The answer to a trigger, in the shape of seed 002's jobGroup response",
        "required": ["id", "reason", "jobGraph", "jobs"],
        "properties": {
            "id": {"type": "string"},
            "reason": {"type": "string", "enum": ["JobStarted", "JobExists"]},
            "jobGraph": {"$ref": "#/components/schemas/JobGraph"},
            "jobs": {
                "type": "object",
                "required": ["data"],
                "properties": {
                    "data": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["id"],
                            "properties": {"id": {"type": "string"}},
                        },
                    }
                },
            },
        },
    },
    "RunSummary": {
        "type": "object",
        "required": [
            "id",
            "dag",
            "status",
            "reason",
            "trigger",
            "params",
            "owner",
            "createdAt",
            "startedAt",
            "endedAt",
        ],
        "properties": {
            "id": {"type": "string"},
            "dag": {"type": "string"},
            "status": {"type": "string", "enum": [s.value for s in RunState]},
            "reason": NULLABLE_STRING,
            "trigger": {"type": "string"},
            "params": {"type": "object"},
            "owner": NULLABLE_STRING,
            "createdAt": TIME,
            "startedAt": TIME,
            "endedAt": TIME,
        },
    },
    "RunList": {
        "type": "object",
        "required": ["data", "next"],
        "properties": {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/RunSummary"}},
            "next": {
                "type": ["string", "null"],
                "description": "the cursor of the next page (null: none)",
            },
        },
    },
    "Job": {
        "type": "object",
        "required": ["id", "status", "attempts"],
        "properties": {
            "id": {"type": "string"},
            "type": NULLABLE_STRING,
            "status": {"type": "string", "enum": [s.value for s in JobState]},
            "attempts": {"type": "integer", "minimum": 0},
            "error": NULLABLE_STRING,
            "remote": {},
            "remoteStatus": NULLABLE_STRING,
            "outputs": {"type": "object"},
            "logTail": NULLABLE_STRING,
            "notes": {"type": "array", "items": {"type": "string"}},
            "startedAt": TIME,
            "endedAt": TIME,
        },
    },
    "Attempt": {
        "type": "object",
        "required": ["job", "attempt", "key", "status"],
        "properties": {
            "job": {"type": "string"},
            "attempt": {"type": "integer", "minimum": 1},
            "key": {"type": "string"},
            "status": {"type": "string"},
            "remote": {},
            "remoteStatus": NULLABLE_STRING,
            "logTail": NULLABLE_STRING,
            "error": NULLABLE_STRING,
            "submittedAt": TIME,
            "acceptedAt": TIME,
            "endedAt": TIME,
        },
    },
    "Run": {
        "allOf": [
            {"$ref": "#/components/schemas/RunSummary"},
            {
                "type": "object",
                "required": ["jobs", "attempts", "events", "jobGraph"],
                "properties": {
                    "jobs": {
                        "type": "object",
                        "required": ["data"],
                        "properties": {
                            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}
                        },
                    },
                    "attempts": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/Attempt"},
                    },
                    "events": {"type": "integer", "minimum": 0},
                    "jobGraph": {"type": ["object", "null"]},
                },
            },
        ]
    },
    "StreamEvent": {
        "type": "object",
        "description": "the data of one server-sent event (its id is seq, its event kind)",
        "required": ["seq", "run", "dag", "job", "kind", "old", "new", "at", "data"],
        "properties": {
            "seq": {"type": "integer", "minimum": 1},
            "run": {"type": "string"},
            "dag": NULLABLE_STRING,
            "job": NULLABLE_STRING,
            "kind": {"type": "string", "enum": ["run", "job", "attempt"]},
            "old": NULLABLE_STRING,
            "new": {"type": "string"},
            "at": {"type": "number"},
            "data": {"type": "object"},
        },
    },
    "CancelAnswer": {
        "type": "object",
        "required": ["id", "status"],
        "properties": {
            "id": {"type": "string"},
            "status": {"type": "string", "enum": ["cancelling", "cancelled"]},
        },
    },
    "JobCancelAnswer": {
        "type": "object",
        "required": ["id", "run", "status"],
        "properties": {
            "id": {"type": "string"},
            "run": {"type": "string"},
            "status": {"type": "string", "enum": ["cancelling", "cancelled"]},
        },
    },
    "AttemptList": {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Attempt"}},
        },
    },
    "Delivery": {
        "type": "object",
        "required": ["id", "run", "dag", "webhook", "event", "url", "status", "attempts"],
        "properties": {
            "id": {"type": "string"},
            "run": {"type": "string"},
            "job": NULLABLE_STRING,
            "dag": {"type": "string"},
            "webhook": {"type": "string"},
            "event": {"type": "string"},
            "url": {"type": "string"},
            "status": {"type": "string", "enum": ["pending", "delivered", "failed", "disabled"]},
            "attempts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["number", "at"],
                    "properties": {
                        "number": {"type": "integer"},
                        "at": {"type": "string", "format": "date-time"},
                        "httpStatus": {"type": ["integer", "null"]},
                        "error": NULLABLE_STRING,
                        "seconds": {"type": "number"},
                    },
                },
            },
            "nextAt": TIME,
            "deliveredAt": TIME,
        },
    },
    "DeliveryList": {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Delivery"}},
        },
    },
    "CallbackAccepted": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string", "enum": ["accepted"]}},
    },
    "Redelivered": {
        "type": "object",
        "required": ["id", "status"],
        "properties": {"id": {"type": "string"}, "status": {"type": "string"}},
    },
}
