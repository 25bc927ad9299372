"""The web process stays light: building the app imports no TensorFlow, Keras, OpenCV or PyAV."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_web_imports_no_heavy_libraries():
    code = (
        "import sys, pkgutil, importlib, web, web.app\n"
        "app = web.app.create_app()\n"
        "for m in pkgutil.walk_packages(web.__path__, 'web.'): importlib.import_module(m.name)\n"
        "names = ('tensorflow', 'keras', 'cv2', 'av', 'ai_edge_litert')\n"
        "heavy = sorted(m for m in names if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"web imported {out.stdout.strip()}"
