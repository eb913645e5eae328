"""Sandbox corpus: enum use (an ordinary program that must pass in every mode)."""

from enum import Enum, Flag, IntEnum, auto


class Color(Enum):
    RED = auto()
    GREEN = auto()


class Permission(Flag):
    READ = auto()
    WRITE = auto()


class Level(IntEnum):
    LOW = 1
    HIGH = 3


def names(enum):
    return [member.name for member in enum]


def check(candidate):
    assert candidate(Color) == ["RED", "GREEN"]


check(names)
assert Color["GREEN"] is Color.GREEN and Color(1) is Color.RED
assert Permission.READ in (Permission.READ | Permission.WRITE)
assert Level.HIGH > Level.LOW and Level.HIGH + 1 == 4
print(Color.RED, repr(Level.LOW), list(Permission))
