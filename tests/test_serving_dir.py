"""Serving directory mechanics on real files: atomic versions, pruning, rollback."""

import os

import pytest

from components.serving import serving_dir


def _model(tmp_path, name, content=b"model"):
    path = tmp_path / name
    (path / "variables").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(content)
    (path / "variables" / "variables.index").write_bytes(content + b"-index")
    return str(path)


def test_publish_creates_increasing_complete_versions(tmp_path):
    serving = str(tmp_path / "serving")
    first = serving_dir.publish(_model(tmp_path, "a"), serving)
    second = serving_dir.publish(_model(tmp_path, "b", b"other"), serving)
    assert serving_dir.versions(serving) == [int(os.path.basename(first)), int(os.path.basename(second))]
    assert open(os.path.join(second, "saved_model.pb"), "rb").read() == b"other"
    assert serving_dir.newest(serving) == second


def test_interrupted_push_leaves_serving_as_it_was(tmp_path):
    serving = str(tmp_path / "serving")
    first = serving_dir.publish(_model(tmp_path, "a"), serving)
    before = sorted(os.listdir(serving))

    def killed(staged):
        assert os.path.exists(os.path.join(staged, "saved_model.pb"))  # fully copied, not yet visible
        assert serving_dir.newest(serving) == first
        raise KeyboardInterrupt  # as if the process died before the rename

    with pytest.raises(KeyboardInterrupt):
        serving_dir.publish(_model(tmp_path, "b", b"new"), serving, check=killed)
    assert sorted(os.listdir(serving)) == before
    assert serving_dir.newest(serving) == first


def test_leftover_staging_from_a_killed_process_is_never_a_version(tmp_path):
    serving = tmp_path / "serving"
    first = serving_dir.publish(_model(tmp_path, "a"), str(serving))
    (serving / ".incoming-99999999999").mkdir()
    (serving / ".incoming-99999999999" / "saved_model.pb").write_bytes(b"half")
    (serving / "99999999999").mkdir()  # a bare numbered folder without saved_model.pb
    assert serving_dir.newest(str(serving)) == first


def test_prune_keeps_newest_k(tmp_path):
    serving = str(tmp_path / "serving")
    paths = [serving_dir.publish(_model(tmp_path, f"m{i}", bytes([i])), serving) for i in range(4)]
    removed = serving_dir.prune(serving, 2)
    assert removed == [int(os.path.basename(p)) for p in paths[:2]]
    assert serving_dir.newest(serving) == paths[-1]
    assert serving_dir.prune(serving, 0) == [int(os.path.basename(paths[2]))]  # the newest always stays
    assert serving_dir.versions(serving) == [int(os.path.basename(paths[3]))]


def test_rollback_restores_previous_version_as_newest(tmp_path):
    serving = str(tmp_path / "serving")
    old = serving_dir.publish(_model(tmp_path, "good", b"good"), serving)
    serving_dir.publish(_model(tmp_path, "bad", b"bad"), serving)
    restored = serving_dir.rollback(serving)
    assert serving_dir.newest(serving) == restored
    assert open(os.path.join(restored, "saved_model.pb"), "rb").read() == b"good"
    assert restored != old
    with pytest.raises(ValueError, match="no version 123"):
        serving_dir.rollback(serving, 123)


def test_rollback_command(tmp_path):
    import subprocess
    import sys

    serving = str(tmp_path / "serving")
    serving_dir.publish(_model(tmp_path, "good", b"good"), serving)
    serving_dir.publish(_model(tmp_path, "bad", b"bad"), serving)
    graft = os.path.join(os.path.dirname(sys.executable), "graft")
    result = subprocess.run([graft, "rollback", "--serving-dir", serving], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert open(os.path.join(serving_dir.newest(serving), "saved_model.pb"), "rb").read() == b"good"
    empty = subprocess.run([graft, "rollback", "--serving-dir", str(tmp_path / "none")], capture_output=True, text=True)
    assert empty.returncode == 2 and "no earlier version" in empty.stderr


def test_identical_savedmodels_are_recognised_by_fingerprint(tmp_path):
    import shutil

    import tensorflow as tf

    def export(path, value):
        module = tf.Module()
        module.v = tf.Variable(value)
        module.f = tf.function(lambda x: x * module.v, input_signature=[tf.TensorSpec([], tf.float32)])
        tf.saved_model.save(module, path)
        return path

    a = export(str(tmp_path / "a"), 1.0)
    copy = str(tmp_path / "copy")
    shutil.copytree(a, copy)
    b = export(str(tmp_path / "b"), 2.0)
    assert serving_dir.same_model(a, copy)
    assert not serving_dir.same_model(a, b)
    assert not serving_dir.same_model(a, str(tmp_path / "missing"))
