"""``POST /api/v1/labels`` (scope ``labels``): record outcome labels, all or nothing, with the token as actor.

The body is ``{"labels": [{"transaction_id", "label", "date"}, ...]}`` (1 to ``MAX_ITEMS`` items): the
same checks as ``vipflow labels import`` (``worker.labels``), each problem naming its item
(``labels[2]: no transaction ...``). 201 with what was recorded; 422 listing every problem, and then
nothing is recorded. A retried request records nothing twice (a label the ledger holds already is
counted as ``already``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from producers.web.auth import require
from worker.labels.parse import LabelRow, LabelsRefused, Problem, check_item, duplicates
from worker.labels.store import LabelStore

MAX_ITEMS = 1000


class LabelItem(BaseModel):
    """One label: the transaction, the label (a NACHA return code R01..R85, chargeback, confirmed_fraud,
    confirmed_good) and the day it happened (YYYY-MM-DD)."""

    model_config = ConfigDict(extra="forbid")

    transaction_id: str = Field(max_length=200, examples=["9f80db7112"])
    label: str = Field(max_length=100, examples=["R01"])
    date: str = Field(max_length=64, examples=["2026-11-30"])


class LabelsBody(BaseModel):
    """A batch of labels, recorded whole or not at all."""

    model_config = ConfigDict(extra="forbid")

    labels: list[LabelItem] = Field(min_length=1, max_length=MAX_ITEMS)


class RecordedBody(BaseModel):
    """What the batch did: its import id, the labels given, recorded, and already recorded before."""

    import_id: int
    rows: int
    recorded: int
    already: int


class ProblemsBody(BaseModel):
    """Why nothing was recorded: the first problems in one line, and every one."""

    error: str
    problems: list[str] = []


def add_routes(app: FastAPI, errors: dict[int | str, dict[str, Any]]) -> None:
    """Add ``POST /api/v1/labels`` to ``app`` (its ledger's engine in ``app.state.ledger``), also answered at
    ``POST /labels``, the path the labels feature was specified with (the same handler, token and scope)."""
    store = LabelStore(app.state.ledger.engine)

    @app.post("/labels", status_code=201, response_model=RecordedBody,
              responses={**errors, 422: {"model": ProblemsBody}}, dependencies=[Depends(require("labels"))],
              operation_id="record_labels_short")
    @app.post("/api/v1/labels", status_code=201, response_model=RecordedBody,
              responses={**errors, 422: {"model": ProblemsBody}}, dependencies=[Depends(require("labels"))])
    def record_labels(body: LabelsBody, request: Request) -> Any:
        """Record outcome labels for transactions in the ledger, all or nothing."""
        token = str(getattr(request.state, "token_name", "unknown"))
        rows: list[LabelRow] = []
        problems: list[Problem] = []
        for i, item in enumerate(body.labels):
            checked = check_item(f"labels[{i}]", i + 1, item.transaction_id, item.label, item.date)
            (rows if isinstance(checked, LabelRow) else problems).append(checked)  # type: ignore[arg-type]
        problems.extend(duplicates(rows))
        try:  # the ledger checks the items that parsed in the same pass: every bad item named at once
            digest = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
            result = store.record(rows, actor=f"token:{token}", source="api", sha256=digest, name=None,
                                  problems=problems)
        except LabelsRefused as exc:
            return JSONResponse({"error": str(exc), "problems": [p.render() for p in exc.problems]},
                                status_code=422)
        return result.to_dict()
