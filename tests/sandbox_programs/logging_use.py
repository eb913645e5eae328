"""Sandbox corpus: logging use (an ordinary program that must pass in every mode)."""

import io
import logging
import logging.handlers


def configured_logger(stream):
    logger = logging.getLogger("sandboxed")
    logger.setLevel(logging.DEBUG)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    logger.addHandler(handler)
    return logger


def check(candidate):
    stream = io.StringIO()
    candidate(stream).warning("careful %d", 3)
    assert stream.getvalue() == "WARNING:sandboxed:careful 3\n"


check(configured_logger)
rotating = logging.handlers.RotatingFileHandler("app.log", maxBytes=200, backupCount=2)
file_logger = logging.getLogger("file")
file_logger.addHandler(rotating)
for i in range(20):
    file_logger.error("line %d", i)
rotating.close()
with open("app.log") as f:
    assert "line 19" in f.read()
memory = logging.handlers.MemoryHandler(capacity=10)
logging.getLogger("memory").addHandler(memory)
logging.getLogger("memory").error("kept")
assert len(memory.buffer) == 1
logging.basicConfig(level=logging.INFO, format="%(message)s")
logging.info("to stderr")
print("logging ok")
