"""Sandbox corpus: sqlite memory (an ordinary program that must pass in every mode)."""

import sqlite3


def top_scores(rows, n):
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE scores (name TEXT, score INTEGER)")
    db.executemany("INSERT INTO scores VALUES (?, ?)", rows)
    return db.execute("SELECT name FROM scores ORDER BY score DESC LIMIT ?", (n,)).fetchall()


def check(candidate):
    assert candidate([("a", 1), ("b", 3), ("c", 2)], 2) == [("b",), ("c",)]


check(top_scores)
print(sqlite3.sqlite_version_info >= (3, 0, 0), top_scores([("z", 9)], 1))
