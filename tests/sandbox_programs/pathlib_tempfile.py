"""Sandbox corpus: pathlib tempfile (an ordinary program that must pass in every mode)."""

import os
import tempfile
from pathlib import Path


def write_and_list(folder, names):
    for name in names:
        (folder / name).write_text(name.upper())
    return sorted(p.name for p in folder.iterdir())


def check(candidate):
    with tempfile.TemporaryDirectory() as folder:
        assert candidate(Path(folder), ["b.txt", "a.txt"]) == ["a.txt", "b.txt"]
        assert (Path(folder) / "a.txt").read_text() == "A.TXT"


check(write_and_list)
work = Path("data")
work.mkdir()
(work / "nested").mkdir()
(work / "nested" / "f.json").write_text("{}")
assert [p.name for p in work.rglob("*.json")] == ["f.json"]
with tempfile.NamedTemporaryFile("w+", suffix=".txt") as f:
    f.write("x")
    f.flush()
    assert os.path.getsize(f.name) == 1
fd, name = tempfile.mkstemp()
os.close(fd)
os.remove(name)
assert Path.cwd().is_dir() and Path(".").resolve() == Path(os.getcwd())
print(Path("a/b/c.tar.gz").suffixes, Path("x/y.txt").with_suffix(".md"))
