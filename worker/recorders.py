"""The recorders' supervisor: `python -m worker.recorders` (bin/run and the compose file start one).

Once a second it reads which cameras should record and keeps one recorder process
(`python -m worker.recorder ID`) alive per camera whose recording is not finished; a recorder that
exits before its recording is done (a crash, a killed process) is started again with backoff. A
recorder ends by itself when its camera is stopped, deleted or its duration is over (it joins the
recording first), so the supervisor never kills one mid-segment; on SIGTERM it stops them all. Each
recorder holds a lease on its camera (shared/cameras.py, claim): with several supervisors (machines),
a camera is still recorded once.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import subprocess
import sys
import time

from shared import cameras
from shared.config import ROOT
from shared.db import get_db

log = logging.getLogger("maskwatch.recorders")
HOST = socket.gethostname()


class Supervisor:
    """One recorder process per camera to record."""

    def __init__(self, every_s: float = 1.0):
        self.every_s = every_s
        self.procs: dict[str, subprocess.Popen] = {}
        self.retry_at: dict[str, tuple[float, float]] = {}  # camera id -> (not before, backoff)
        self.running = True

    def step(self) -> None:
        """Start what should run, reap what has ended."""
        for cid, proc in list(self.procs.items()):
            if proc.poll() is not None:
                del self.procs[cid]
                cameras.release(cid, f"{HOST}:{proc.pid}")  # a killed recorder could not give it up
                if proc.returncode:
                    wait = min(2 * self.retry_at.get(cid, (0, 1.0))[1], 60.0)
                    self.retry_at[cid] = (time.monotonic() + wait, wait)
                    log.warning("recorder of camera %s exited with %s; again in %.0f s", cid, proc.returncode,
                                wait)
        for cam in cameras.wanted():
            cid = str(cam["_id"])
            if cid in self.procs or time.monotonic() < self.retry_at.get(cid, (0, 0))[0]:
                continue
            doc = get_db().camera_status.find_one({"_id": cid}) or {}
            if doc.get("recording_id") == cam.get("recording_id") and doc.get("done_recording"):
                continue  # this recording is finished; a new Start makes a new one
            if cameras.holder(cid):
                continue  # recorded by another supervisor's recorder (here or on another machine)
            log.info("starting the recorder of camera %s", cid)
            self.procs[cid] = subprocess.Popen([sys.executable, "-m", "worker.recorder", cid], cwd=ROOT)

    def run(self) -> None:
        """Supervise until SIGTERM/SIGINT, then stop every recorder (each stores what it has)."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        while self.running:
            try:
                self.step()
            except Exception:  # noqa: BLE001 - an outage of MongoDB must not end the supervisor
                log.exception("supervisor step failed")
            time.sleep(self.every_s)
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def _stop(self, *_) -> None:
        self.running = False


def main(argv: list[str] | None = None) -> None:
    """Run the supervisor."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, default=1.0, help="seconds between checks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    Supervisor(every_s=args.every).run()


if __name__ == "__main__":
    main()
