import subprocess
import sys


def test_core_imports_torch_only():
    code = (
        "import sys, soundctm.core, soundctm.core.gmm\n"
        "heavy = ['transformers', 'diffusers', 'librosa', 'soundfile', 'gradio', 'accelerate', 'matplotlib']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"soundctm.core pulled in: {out.stdout.strip()}"
