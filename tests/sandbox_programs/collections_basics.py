"""Sandbox corpus: collections basics (an ordinary program that must pass in every mode)."""

from collections import ChainMap, Counter, OrderedDict, defaultdict, deque, namedtuple


def most_common_letter(text):
    return Counter(c for c in text.lower() if c.isalpha()).most_common(1)[0][0]


def group_by_length(words):
    groups = defaultdict(list)
    for word in words:
        groups[len(word)].append(word)
    return dict(groups)


def check(candidate):
    assert candidate("Hello World") == "l"
    assert candidate("aab") == "a"


check(most_common_letter)
assert group_by_length(["a", "bb", "c"]) == {1: ["a", "c"], 2: ["bb"]}
window = deque(maxlen=3)
for i in range(5):
    window.append(i)
assert list(window) == [2, 3, 4]
ordered = OrderedDict.fromkeys("cab")
ordered.move_to_end("c")
assert list(ordered) == ["a", "b", "c"]
Point = namedtuple("Point", "x y")
assert Point(1, 2)._replace(y=5) == (1, 5)
assert ChainMap({"a": 1}, {"a": 2, "b": 3})["b"] == 3
print(sorted(Counter("mississippi").items()))
