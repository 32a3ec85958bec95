"""tools/gpu_bench.sh, the one command a GPU slot runs, run on CPU at tiny sizes so that it cannot
rot between the rare sessions that have a GPU: every bench it names runs and leaves its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_gpu_script_runs_every_bench_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    env = {**os.environ, "PYTHON": sys.executable, "DEVICE": "cpu", "N": "6", "NAIVE_N": "1",
           "SHAPE": "esm2_t6_8M_UR50D", "LENGTH": "60", "MAX_LEN": "80", "COMPILE_BACKEND": "eager", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "tools" / "gpu_bench.sh"), str(out)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "torch" in (out / "device.txt").read_text()
    for name in ("esm2_650M_300aa", "default_2tasks", "default_all"):
        figures = json.loads((out / f"{name}.json").read_text())
        assert (out / f"{name}.log").read_text().strip()
        first = figures["scenarios"][0]
        assert figures["max_tokens"] == 16384  # --max-tokens auto off CUDA: the fixed default
        assert all(t["sequences"] == 6 and t["seconds"] > 0 for t in first["timings"] if t["name"] != "naive")
        assert any("auto" in note for note in first["notes"])
    shaped = json.loads((out / "esm2_650M_300aa.json").read_text())["scenarios"][0]
    assert {"screen", "encoder only", "naive"} <= {t["name"] for t in shaped["timings"]}
    assert any("--compile': not timed here" in note for note in shaped["notes"])  # per-residue tasks only
    twin = json.loads((out / "default_all.json").read_text())["scenarios"][1]  # regression + class heads
    assert {"screen --compile", "screen --compile, again"} <= {t["name"] for t in twin["timings"]}
    assert any("graphs compiled" in note for note in twin["notes"])
    host = json.loads((out / "host.json").read_text())
    assert host["host"] and host["notes"]
