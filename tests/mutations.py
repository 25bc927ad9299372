"""Mutation check: apply one-line faults to a scratch copy of the tree, run their tests, list survivors.

Run with the services up (`eval "$(bin/services env)"; export MONGO_URI REDIS_URL`):

    .venv/bin/python -m tests.mutations            # every fault
    .venv/bin/python -m tests.mutations retry-id   # only the named ones

The working tree is never touched: its tracked files are copied to a temporary folder, each fault is
applied there and undone after its tests. Exit status 0 when every fault was caught, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Fault:
    """One plausible one-line bug: `old` (which must occur exactly once in `path`) becomes `new`."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]  # pytest arguments that must fail once the fault is in


FAULTS = (
    Fault("retry-id", "web/actions.py",
          'enqueue(PROCESS_JOB, str(job["_id"]))', 'enqueue(PROCESS_JOB, str(job["input_id"]))',
          ("tests/web/test_api.py", "-k", "retry")),
    Fault("explain-masked", "models/explain.py",
          "c = int(tf.argmax(logits[0])) if class_index is None else class_index", "c = 0",
          ("tests/models/test_explain.py",)),
    Fault("tag-inside", "worker/pipeline/annotate.py",
          "    x = min(max(0, x), max(0, bounds[0] - box_w))\n", "",
          ("tests/worker/test_annotate.py",)),
    Fault("rate-incorrect", "shared/results.py",
          "decided = masked + unmasked + incorrect", "decided = masked + unmasked",
          ("tests/web/test_results.py", "-k", "frames_csv")),
    Fault("tag-one-pixel-wide", "worker/pipeline/annotate.py",
          "(x + box_w - 1, top + box_h - 1)", "(x + box_w, top + box_h)",
          ("tests/worker/test_annotate.py",)),
    Fault("progress-every-frame", "worker/progress.py",
          "now - self.last_write < self.every_s", "now - self.last_write < 0",
          ("tests/worker/test_progress.py",)),
    Fault("retry-flash", "web/views/clips.py",
          'if job["status"] == jobs.QUEUED', "if job",
          ("tests/test_unreachable.py", "-k", "could_not_be_queued")),
    Fault("late-cancel", "shared/jobs.py",
          'extra_filter={"run_id": run_id, "cancel_requested": {"$ne": True}}',
          'extra_filter={"run_id": run_id}',
          ("tests/shared/test_jobs.py", "tests/worker/test_failures.py", "-k",
           "cancel_during or outputs_are_stored")),
    Fault("cache-no-bump", "shared/db.py",
          "cache.bump(self.database.name, REVISED[self.name], _written_ids(name, args, kwargs, result))",
          "None",
          ("tests/shared/test_cache.py",)),
    Fault("shared-rows-own-token", "web/filters.py",
          'Markup(FORM_TOKEN_STAND_IN) if g.get("shared_render") else generate_csrf()', "generate_csrf()",
          ("tests/web/test_clips.py", "-k", "own_form_token")),
    Fault("live-cut-unlinked", "worker/live_join.py",
          "if iou[i, j] >= LINK_IOU}", "if iou[i, j] > 1}",
          ("tests/worker/test_live_join.py",)),
    Fault("live-part-local-frames", "worker/live_join.py",
          "        frame.index += first\n", "",
          ("tests/worker/test_live_join.py",)),
    Fault("live-people-per-segment", "web/live.py",
          "            parent[root((rec, b))] = root((rec, a))\n", "",
          ("tests/web/test_live_pages.py", "-k", "crossing_cuts")),
)


def scratch_copy() -> Path:
    """The working tree's tracked files (as they are now, edits included) in a new temporary folder."""
    dest = Path(tempfile.mkdtemp(prefix="maskwatch-mutations-"))
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    # Models, data and their caches are large and only read: share them rather than copy.
    if (ROOT / ".cache").exists():
        (dest / ".cache").symlink_to(ROOT / ".cache")
    return dest


def run_tests(tree: Path, args: tuple[str, ...]) -> bool:
    """True when pytest passes on tree with args (the tree's own code is imported, not this one's)."""
    env = {**os.environ, "ASSET_CACHE": os.environ.get("ASSET_CACHE") or str(ROOT / ".cache" / "assets")}
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *args]
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    return proc.returncode == 0


def main(argv: list[str] | None = None) -> int:
    """Check the named faults (all by default); prints one line per fault and a verdict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"faults to check: {', '.join(f.name for f in FAULTS)}")
    args = parser.parse_args(argv)
    unknown = set(args.names) - {f.name for f in FAULTS}
    if unknown:
        parser.error(f"unknown fault(s): {', '.join(sorted(unknown))}")
    if not os.environ.get("MONGO_URI") or not os.environ.get("REDIS_URL"):
        print('the services are needed: eval "$(bin/services env)"; export MONGO_URI REDIS_URL')
        return 2
    faults = [f for f in FAULTS if not args.names or f.name in args.names]
    tree = scratch_copy()
    survived = []
    try:
        for fault in faults:
            target = tree / fault.path
            original = target.read_text()
            if original.count(fault.old) != 1:
                print(f"{fault.name}: the line to change is no longer in {fault.path} once: update FAULTS")
                return 2
            # The unmutated tree must pass, or a "caught" fault would mean nothing.
            if not run_tests(tree, fault.tests):
                print(f"{fault.name}: its tests fail without the fault: {' '.join(fault.tests)}")
                return 2
            target.write_text(original.replace(fault.old, fault.new))
            try:
                caught = not run_tests(tree, fault.tests)
            finally:
                target.write_text(original)
            verdict = "caught" if caught else "SURVIVED"
            print(f"{fault.name}: {verdict} ({fault.path}; {' '.join(fault.tests)})", flush=True)
            if not caught:
                survived.append(fault.name)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    print(f"{len(faults) - len(survived)} of {len(faults)} faults caught"
          + (f"; survived: {', '.join(survived)}" if survived else ""))
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
