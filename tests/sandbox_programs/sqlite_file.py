"""Sandbox corpus: sqlite file (an ordinary program that must pass in every mode)."""

import os
import sqlite3


def store_and_count(path, items):
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE IF NOT EXISTS items (value TEXT)")
        db.executemany("INSERT INTO items VALUES (?)", [(i,) for i in items])
    db.close()
    with sqlite3.connect(path) as db:
        count = db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    db.close()
    return count


def check(candidate):
    assert candidate("work.db", ["a", "b"]) == 2
    assert candidate("work.db", ["c"]) == 3


check(store_and_count)
assert os.path.getsize("work.db") > 0
os.remove("work.db")
print("sqlite file ok")
