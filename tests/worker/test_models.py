"""Models load once per process, on first use, and again in a forked child (never shared across fork)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import worker.loaded_models as wm

ROOT = Path(__file__).resolve().parents[2]


def _child_loads(queue) -> None:
    first = wm.get_models()
    queue.put((first["pid"], os.getpid(), first is wm.get_models()))


def test_loaded_once_per_process_and_again_after_fork(monkeypatch):
    loads = []

    def fake_load():
        loads.append(os.getpid())
        return {"pid": os.getpid()}

    monkeypatch.setattr(wm, "_load", fake_load)
    monkeypatch.setattr(wm, "_pid", None)
    wm._cache.clear()
    try:
        parent = wm.get_models()
        assert wm.get_models() is parent and loads == [os.getpid()]
        queue = multiprocessing.get_context("fork").Queue()
        child = multiprocessing.get_context("fork").Process(target=_child_loads, args=(queue,))
        child.start()
        loaded_in, child_pid, cached = queue.get(timeout=30)
        child.join(30)
        assert loaded_in == child_pid != os.getpid() and cached  # its own copy, loaded once there
    finally:
        wm._cache.clear()


def test_importing_the_tasks_loads_nothing_heavy():
    # What Celery's parent process does before forking its pool: import the task module.
    code = ("import sys, worker.tasks, worker.loaded_models as m; "
            "print(bool(m._cache), 'tensorflow' in sys.modules, 'ai_edge_litert' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "False"]
