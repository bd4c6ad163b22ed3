"""``import shoal`` must stay light: heavy dependencies load where they are used."""

import subprocess
import sys


def test_importing_shoal_does_not_import_heavy_dependencies() -> None:
    code = (
        "import sys, shoal, shoal.config, shoal.types, shoal.errors;"
        "heavy = [m for m in ('llama_cpp', 'torch', 'fastapi', 'sentence_transformers', 'nats') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
