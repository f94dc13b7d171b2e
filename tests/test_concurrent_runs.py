"""Two runs of one pipeline at once: one holds the pipeline's run lock, the other waits or is
refused (exit code 3, naming the holder); a lock left by a killed run is taken over; a push
judged against a version that no longer serves is refused with that reason."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from components import locks
from components.contract import EXIT_BUSY, RUN_LOCK_FILE, SERVING_VERSION_PROPERTY
from tests.conftest import REPO, small_training_config

_HOLD = """
import sys, time
from components import locks
lock = locks.acquire(sys.argv[1], sys.argv[2], locks.describe("run", "holder-run"))
print("held", flush=True)
time.sleep(float(sys.argv[3]))
lock.release()
print("released", flush=True)
"""


def _holder(folder: str, seconds: float) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD, folder, RUN_LOCK_FILE, str(seconds)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_run_of_the_pipeline_is_refused_naming_the_run_that_holds_it(tmp_path, tiny_digits_dir):
    config = small_training_config(tmp_path, data_dir=tiny_digits_dir)
    holder = _holder(config["pipeline_root"], 120)
    try:
        (tmp_path / "c.json").write_text(json.dumps(config))
        started = time.time()
        result = subprocess.run(
            [sys.executable, os.path.join(REPO, "local_runner.py"), "--config", str(tmp_path / "c.json")],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )
        assert result.returncode == EXIT_BUSY
        assert f"another run of pipeline 'test' is in progress: run holder-run holds {config['pipeline_root']}" in (
            result.stderr
        )
        assert f"process {holder.pid} on " in result.stderr and "--wait SECONDS" in result.stderr
        assert time.time() - started < 60  # refused before TFX or TensorFlow loads
    finally:
        holder.kill()
        holder.wait()


def test_a_waiting_run_takes_the_lock_when_the_holder_is_done(tmp_path):
    holder = _holder(str(tmp_path), 3)
    started = time.time()
    with pytest.raises(locks.LockBusy):
        locks.acquire(str(tmp_path), RUN_LOCK_FILE, locks.describe("run", "second"))
    with locks.acquire(str(tmp_path), RUN_LOCK_FILE, locks.describe("run", "second"), wait_seconds=60) as lock:
        assert time.time() - started >= 2.5 and lock.previous is None  # released cleanly, not taken over
        assert holder.stdout.readline().strip() == "released"
    holder.wait()


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    holder = _holder(str(tmp_path), 600)
    holder.send_signal(signal.SIGKILL)  # a killed run: no release
    holder.wait()
    with locks.acquire(str(tmp_path), RUN_LOCK_FILE, locks.describe("run", "next")) as lock:
        assert lock.previous["run_id"] == "holder-run" and lock.previous["pid"] == holder.pid
    # Released cleanly this time: the next holder finds nothing left behind.
    with locks.acquire(str(tmp_path), RUN_LOCK_FILE, locks.describe("run", "after")) as lock:
        assert lock.previous is None


def test_a_push_judged_against_a_version_that_no_longer_serves_is_refused(tmp_path):
    """Run A's candidate was compared with version 1; run B pushed version 2 meanwhile. A's
    Pusher refuses, saying so; serving keeps B's version."""
    from tfx.proto import pusher_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import json_utils, proto_utils

    from components.pusher.executor import Executor
    from components.serving import serving_dir

    serving = tmp_path / "serving"
    for version in ("1", "2"):
        (serving / version).mkdir(parents=True)
        (serving / version / "saved_model.pb").write_bytes(b"model " + version.encode())
    candidate = standard_artifacts.Model()
    candidate.uri = str(tmp_path / "candidate")
    (tmp_path / "candidate" / "Format-Serving").mkdir(parents=True)
    (tmp_path / "candidate" / "Format-Serving" / "saved_model.pb").write_bytes(b"candidate")
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    blessing.set_int_custom_property("blessed", 1)
    (tmp_path / "blessing").mkdir()
    (tmp_path / "blessing" / "BLESSED").write_text("")
    baseline = standard_artifacts.Model()
    baseline.set_string_custom_property(SERVING_VERSION_PROPERTY, str(serving / "1"))
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(serving))
    )
    Executor().Do(
        {"model": [candidate], "model_blessing": [blessing], "baseline_model": [baseline]},
        {"pushed_model": [pushed]},
        {
            "push_destination": proto_utils.proto_to_json(destination),
            "custom_config": json_utils.dumps(
                {
                    "keep_versions": 5,
                    "tflite_on_failure": "push_without",
                    "resolved_config": {},
                    "code_version": "graft",
                }
            ),
        },
    )
    assert pushed.get_int_custom_property("pushed") == 0
    reason = pushed.get_string_custom_property("skipped_reason")
    assert reason.startswith(f"serving changed since the candidate was judged: it was compared with {serving / '1'}")
    assert f"but {serving / '2'} serves now" in reason
    assert serving_dir.versions(str(serving)) == [1, 2]
