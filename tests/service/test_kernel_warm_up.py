"""The numba warm-up of `serve` (kernel_warm_up.py): what a kernel's cache holds is loaded before
the first call, and the call then compiles nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

KERNELS = '''
from numba import njit


@njit(cache=True, inline="always")
def helper(x):
    return x + 1.0


@njit(cache=True)
def step(values, dt):
    for i in range(values.shape[0]):
        values[i] = helper(values[i]) * dt
'''

FIRST_RUN = """
import numpy as np, kernels
kernels.step(np.zeros(4), 0.5)
"""

WARM_START = """
import json, numpy as np, kernels
from shuttled.control.kernel_warm_up import warm_cached_kernels
loaded = warm_cached_kernels([kernels])
before = [str(s) for s in kernels.step.signatures]
kernels.step(np.zeros(4), 0.5)
print(json.dumps({"loaded": loaded, "before": before,
                  "hits": sum(kernels.step.stats.cache_hits.values()),
                  "misses": sum(kernels.step.stats.cache_misses.values()),
                  "helper": len(kernels.helper.signatures)}))
"""


def _python(code: str, cwd: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(cwd))
    env.pop("NUMBA_CACHE_DIR", None)  # the cache beside the module, in this test's directory
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_warmed_up_kernel_is_loaded_from_its_cache_before_the_first_call(
    tmp_path: Path,
) -> None:
    (tmp_path / "kernels.py").write_text(KERNELS)
    _python(FIRST_RUN, tmp_path)  # a daemon that ran before: the cache holds step(float64[::1], f8)
    warm = json.loads(_python(WARM_START, tmp_path).splitlines()[-1])
    assert warm["loaded"] == 1 and len(warm["before"]) == 1  # before the first call
    assert warm["hits"] == 1 and warm["misses"] == 0  # from the cache, nothing compiled
    assert warm["helper"] == 0  # inlined helpers are not loaded on their own


def test_without_a_cache_the_warm_up_does_nothing(tmp_path: Path) -> None:
    (tmp_path / "kernels.py").write_text(KERNELS)
    code = "import kernels\nfrom shuttled.control.kernel_warm_up import warm_cached_kernels\n"
    code += "print(warm_cached_kernels([kernels]), len(kernels.step.signatures))"
    assert _python(code, tmp_path).split() == ["0", "0"]
