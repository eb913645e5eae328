"""Sandbox corpus: dataclasses use (an ordinary program that must pass in every mode)."""

from dataclasses import asdict, dataclass, field, replace


@dataclass(order=True, frozen=True)
class Version:
    major: int
    minor: int = 0
    tags: tuple = field(default=(), compare=False)


def latest(versions):
    return max(versions)


def check(candidate):
    assert candidate([Version(1, 2), Version(2, 0), Version(1, 9)]) == Version(2, 0)


check(latest)
v = Version(1, tags=("rc",))
assert replace(v, minor=5) == Version(1, 5)
assert asdict(v) == {"major": 1, "minor": 0, "tags": ("rc",)}
print(v, sorted([Version(3), Version(1, 1), Version(1)]))
