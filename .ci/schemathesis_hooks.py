"""Schemathesis hooks for `.ci/run`: what JSON Schema cannot say about a concert spec.

The OpenAPI document states every rule of a concert spec that JSON Schema can express
(lengths, patterns, ranges, list sizes). Three rules it can only describe in words: a
date must not have started, the sections of a date have distinct names, and all
sections of a date together hold at most `--max-seats-per-date` seats (a sum of
products). Before each call, this hook moves every well-formed `startsAt` a year
ahead, renames repeated section names, and shrinks well-formed sections whose seats
add up to more than the maximum. Schemathesis then checks again whether the case is
valid, so cases that were meant to be invalid stay so or are judged afresh.
"""

import datetime
import re

import schemathesis

SEATS_PER_DATE_MAX = 100_000
RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)


def _count(value):
    """A seat count the schema allows (a positive integer), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value != int(value) or not 1 <= value <= SEATS_PER_DATE_MAX:
        return None
    return int(value)


def _fit_seats(sections):
    sizes = [
        (_count(s.get("rows")), _count(s.get("seatsPerRow")))
        for s in sections
        if isinstance(s, dict)
    ]
    if not sizes or len(sizes) != len(sections) or any(None in size for size in sizes):
        return
    if sum(rows * per_row for rows, per_row in sizes) <= SEATS_PER_DATE_MAX:
        return
    share = max(1, SEATS_PER_DATE_MAX // len(sections))
    for section, (_, per_row) in zip(sections, sizes):
        section["rows"] = 1
        section["seatsPerRow"] = min(per_row, share)


def _distinct_names(sections):
    seen = set()
    for i, section in enumerate(sections):
        if not isinstance(section, dict) or not isinstance(section.get("name"), str):
            continue
        name = section["name"]
        if name in seen:
            name = f"{name[:190]}~{i}"
            section["name"] = name
        seen.add(name)


@schemathesis.hook
def before_call(context, case, kwargs):
    operation = case.operation
    if operation.method.upper() != "POST" or operation.path != "/api/v1/admin/concerts":
        return
    if not isinstance(case.body, dict) or not isinstance(case.body.get("dates"), list):
        return
    ahead = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=365)
    for date in case.body["dates"]:
        if not isinstance(date, dict):
            continue
        starts_at = date.get("startsAt")
        if isinstance(starts_at, str) and RFC3339.match(starts_at):
            date["startsAt"] = ahead.strftime("%Y-%m-%dT%H:%M:%SZ")
        if isinstance(date.get("sections"), list):
            _distinct_names(date["sections"])
            _fit_seats(date["sections"])
