"""KFP's cron expressions: six fields, the first is seconds (`0 0 2 * * *` is 02:00 daily).

A five-field expression, valid elsewhere, means something else to KFP, so it is refused with
the six-field form it probably meant; the next fire times show what an expression does.
"""

from __future__ import annotations

import datetime as dt

FIELDS = (  # name, lowest, highest
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 6),
)
_NAMES = {
    4: {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())},
    5: {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())},
}


class CronError(ValueError):
    pass


def _values(text: str, index: int) -> set[int]:
    name, low, high = FIELDS[index]
    result = set()
    for part in text.lower().split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) < 1:
                raise CronError(f"{name} field: bad step {step_text!r}")
            step = int(step_text)
        if part in ("*", "?"):
            start, end = low, high
        elif "-" in part:
            start, end = (_number(p, index) for p in part.split("-", 1))
        else:
            start = _number(part, index)
            end = high if step > 1 else start
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise CronError(f"{name} field: {part!r} is outside {low}-{high}")
        result.update(range(start, end + 1, step))
    if index == 5 and 7 in result:  # some write Sunday as 7
        result.add(0)
    return result


def _number(text: str, index: int) -> int:
    if text in _NAMES.get(index, {}):
        return _NAMES[index][text]
    if index == 5 and text == "7":
        return 0
    if not text.isdigit():
        raise CronError(f"{FIELDS[index][0]} field: {text!r} is not a number")
    return int(text)


def parse(expression: str) -> list[set[int]]:
    """The allowed values of each of the six fields; CronError explains what is wrong."""
    fields = expression.split()
    if len(fields) == 5:
        raise CronError(
            f"{expression!r} has 5 fields, but KFP's cron has 6, starting with seconds: did you mean '0 {expression}'?"
        )
    if len(fields) != 6:
        raise CronError(
            f"{expression!r} has {len(fields)} fields; KFP's cron needs 6: "
            "second minute hour day-of-month month day-of-week"
        )
    return [_values(text, i) for i, text in enumerate(fields)]


def next_fire_times(expression: str, after: dt.datetime, count: int = 3) -> list[dt.datetime]:
    """The next `count` times (after `after`, same timezone) the expression fires."""
    seconds, minutes, hours, days, months, weekdays = parse(expression)
    restricted_day = expression.split()[3] not in ("*", "?")
    restricted_weekday = expression.split()[5] not in ("*", "?")
    found = []
    moment = after.replace(microsecond=0) + dt.timedelta(seconds=1)
    limit = after + dt.timedelta(days=366 * 5)
    while len(found) < count and moment <= limit:
        weekday = (moment.weekday() + 1) % 7  # cron: 0 is Sunday
        day_ok = moment.day in days
        weekday_ok = weekday in weekdays
        # As in cron: when both day fields are restricted, either may match.
        date_ok = (day_ok or weekday_ok) if (restricted_day and restricted_weekday) else (day_ok and weekday_ok)
        if moment.month not in months or not date_ok:
            moment = (moment + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0)
            continue
        if moment.hour not in hours:
            moment = (moment + dt.timedelta(hours=1)).replace(minute=0, second=0)
            continue
        if moment.minute not in minutes:
            moment = (moment + dt.timedelta(minutes=1)).replace(second=0)
            continue
        if moment.second in seconds:
            found.append(moment)
        moment += dt.timedelta(seconds=1)
    if not found:
        raise CronError(f"{expression!r} never fires")
    return found
