"""Sandbox corpus: abc use (an ordinary program that must pass in every mode)."""

from abc import ABC, abstractmethod


class Shape(ABC):
    @abstractmethod
    def area(self): ...


class Square(Shape):
    def __init__(self, side):
        self.side = side

    def area(self):
        return self.side**2


def total_area(shapes):
    return sum(shape.area() for shape in shapes)


def check(candidate):
    assert candidate([Square(2), Square(3)]) == 13


check(total_area)
try:
    Shape()
except TypeError as error:
    print("abstract:", "abstract" in str(error))
print(isinstance(Square(1), Shape))
