"""Sandbox corpus: threading use (an ordinary program that must pass in every mode)."""

import threading


def parallel_count(n_threads, per_thread):
    counter = {"value": 0}
    lock = threading.Lock()

    def work():
        for _ in range(per_thread):
            with lock:
                counter["value"] += 1

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counter["value"]


def check(candidate):
    assert candidate(4, 1000) == 4000


check(parallel_count)
event = threading.Event()
timer = threading.Timer(0.01, event.set)
timer.start()
assert event.wait(5)
local = threading.local()
local.x = 1
print(parallel_count(3, 10), threading.active_count() >= 1)
