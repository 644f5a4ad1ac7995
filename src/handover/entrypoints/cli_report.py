"""The output of ``handover report deleted-owners`` (SPEC 12; the command itself is in ``entrypoints.cli``).

One row per course batch or asset that a user marked deleted still owns (``service.reports``): CSV with a header
(Lern's "Deleted Users Assets Report" columns, plus ``ownedAs``), or one JSON object per line. Rows are written as
they are read, so memory stays flat; the header only once the store has answered (nothing is written before an
error that comes at once).
"""

from __future__ import annotations

import csv
import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TextIO

from handover.service.reports import COLUMNS, DeletedOwnersReport

FORMATS = ("csv", "jsonl")


@dataclass
class Written:
    """What was written: rows by kind (``course batches``, ``assets``) and how many users they belong to."""

    rows: Counter[str] = field(default_factory=Counter)
    users: int = 0

    def summary(self, organisation: str | None) -> str:
        where = f"organisation {organisation}" if organisation is not None else "every organisation"
        return (f"{_count(self.rows['course batches'], 'course batch', 'course batches')} and "
                f"{_count(self.rows['assets'], 'asset', 'assets')} still owned by "
                f"{_count(self.users, 'deleted user', 'deleted users')} ({where})")


def write_deleted_owners(report: DeletedOwnersReport, organisation: str | None, fmt: str, out: TextIO) -> Written:
    """Write the rows of ``organisation`` (None: every one) to ``out`` as ``fmt`` (csv or jsonl). The use case's
    ``ServiceError`` goes through (the CLI maps it); so does ``BrokenPipeError`` when the reader stops early."""
    rows = report.rows(organisation)
    first = next(rows, None)  # the store answered: only now the header
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(COLUMNS)
    written, last = Written(), None
    for row in itertools.chain([first] if first is not None else [], rows):
        if writer is not None:
            writer.writerow(row.csv_values())
        else:
            out.write(json.dumps(row.to_json(), ensure_ascii=False) + "\n")
        written.rows["course batches" if row.is_batch else "assets"] += 1
        if row.userId != last:  # rows come user by user
            written.users, last = written.users + 1, row.userId
    out.flush()
    return written


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"
