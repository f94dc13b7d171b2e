"""A local run's components share one process: what one frees must go back to the operating
system before the next starts, or the process stays at the largest component's peak."""

import json
import subprocess
import sys

from tests.conftest import REPO

_FREED_THEN_RELEASED = r"""
import json
from components.memory import release_freed_memory
from tests.memory import rss_mb

before = rss_mb()
blocks = [bytes(4000) + bytes([i % 256]) for i in range(100_000)]  # 400 MB in malloc's heap
pin = bytes(4000) + b"pin"  # allocated after them: the heap's top cannot simply shrink
held = rss_mb()
del blocks
freed = rss_mb()
release_freed_memory()
print(json.dumps({"before": before, "held": held, "freed": freed, "released": rss_mb()}))
"""


def test_memory_a_step_freed_goes_back_to_the_operating_system():
    result = subprocess.run(
        [sys.executable, "-c", _FREED_THEN_RELEASED], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode == 0, result.stderr
    mb = json.loads(result.stdout)
    print(mb)
    assert mb["held"] - mb["before"] > 350
    assert mb["freed"] - mb["before"] > 300  # freed by Python, still resident: glibc keeps it
    assert mb["released"] - mb["before"] < 50
