"""Sandbox corpus: datetime use (an ordinary program that must pass in every mode)."""

from datetime import UTC, date, datetime, timedelta, timezone


def days_between(a, b):
    return abs((date.fromisoformat(b) - date.fromisoformat(a)).days)


def check(candidate):
    assert candidate("2024-01-01", "2024-03-01") == 60
    assert candidate("2023-12-31", "2023-12-31") == 0


check(days_between)
moment = datetime(2024, 2, 29, 12, 30, tzinfo=UTC)
assert (moment + timedelta(days=1)).date() == date(2024, 3, 1)
assert moment.astimezone(timezone(timedelta(hours=2))).hour == 14
assert datetime.strptime("03/04/2021", "%d/%m/%Y").month == 4
assert datetime.now() > datetime(2000, 1, 1)
print(moment.isoformat(), moment.strftime("%A %d %B %Y"), date(2024, 1, 1).weekday())
