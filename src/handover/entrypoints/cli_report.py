"""``handover report ...``: reports read from the store (SPEC 12).

``handover report deleted-owners [--organisation ORG] [--format csv|jsonl]`` writes, to stdout, one row per
course batch or asset that a user marked deleted still owns (``service.reports``): CSV with a header (Lern's
"Deleted Users Assets Report" columns, plus ``ownedAs``), or one JSON object per line. Rows are written as they
are read, so memory stays flat; a summary goes to stderr. Exit codes as every command: 0 success (an empty
report too), 2 bad usage (an unknown organisation), 1 store failure.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import sys
from collections import Counter
from enum import StrEnum
from typing import Annotated

import typer

from handover.entrypoints.cli import (
    EXIT_STORE,
    EXIT_USAGE,
    ConfigOpt,
    StoreOpt,
    check_text,
    err,
    fail,
    open_app,
    store_errors,
)
from handover.service.reports import COLUMNS
from handover.service.requests import Invalid, NotFound, ServiceError

report_app = typer.Typer(
    help="Reports read from the store (SPEC 12).", no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False,
)


class Format(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


@report_app.command("deleted-owners")
def deleted_owners(
    organisation: Annotated[
        str | None,
        typer.Option("--organisation", "-o", help="Only the deleted users whose root organisation is this one "
                     "(default: every organisation)."),
    ] = None,
    format: Annotated[Format, typer.Option("--format", help="csv (with a header) or jsonl.")] = Format.csv,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """The users marked deleted who still own course batches (creator or mentor, statuses a transfer moves) or
    configured assets: one row per record, to stdout. Example: handover report deleted-owners -o org-1 > owners.csv"""
    if organisation is not None:
        check_text(organisation, "organisation")
    handover = open_app(store, config)
    report = handover.deleted_owners()
    tally: Counter[str] = Counter()
    users, last = 0, None
    try:
        org = report.organisation_for(None, organisation) if organisation is not None else None
        rows = report.rows(org)
        first = next(rows, None)  # the store answered: only now the header (no header before an error)
        writer = csv.writer(sys.stdout, lineterminator="\n") if format is Format.csv else None
        if writer is not None:
            writer.writerow(COLUMNS)
        for row in itertools.chain([first] if first is not None else [], rows):
            if writer is not None:
                writer.writerow(row.csv_values())
            else:
                sys.stdout.write(json.dumps(row.to_json(), ensure_ascii=False) + "\n")
            tally["course batches" if row.is_batch else "assets"] += 1
            if row.userId != last:  # rows come user by user
                users, last = users + 1, row.userId
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    except (Invalid, NotFound) as exc:
        fail(exc.message, EXIT_USAGE)
    except ServiceError as exc:
        cause = str(getattr(exc.__cause__, "orig", None) or exc.__cause__ or "").strip().splitlines()
        fail(exc.message + (f" {cause[0][:300]}" if cause else ""), EXIT_STORE)
    except store_errors() as exc:
        fail(f"store: {exc}", EXIT_STORE)
    where = f"organisation {org}" if org is not None else "every organisation"
    err.print(
        f"{_count(tally['course batches'], 'course batch', 'course batches')} and "
        f"{_count(tally['assets'], 'asset', 'assets')} still owned by "
        f"{_count(users, 'deleted user', 'deleted users')} ({where})",
        highlight=False, soft_wrap=True,
    )


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"
