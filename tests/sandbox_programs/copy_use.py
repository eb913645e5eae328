"""Sandbox corpus: copy use (an ordinary program that must pass in every mode)."""

import copy


def independent(grid):
    return copy.deepcopy(grid)


def check(candidate):
    grid = [[1, 2], [3]]
    other = candidate(grid)
    other[0].append(9)
    assert grid == [[1, 2], [3]] and other == [[1, 2, 9], [3]]


check(independent)
shallow = copy.copy([[1]])
assert shallow[0] is not None


class Node:
    def __init__(self):
        self.me = self


node = copy.deepcopy(Node())
assert node.me is node
print("deepcopy ok")
