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
    good = _model(tmp_path, "good", b"good")
    os.makedirs(os.path.join(good, "tflite"))
    with open(os.path.join(good, "tflite", "model_float.tflite"), "wb") as f:
        f.write(b"on-device good")
    old = serving_dir.publish(good, serving)
    serving_dir.publish(_model(tmp_path, "bad", b"bad"), serving)
    restored = serving_dir.rollback(serving)
    assert serving_dir.newest(serving) == restored
    assert open(os.path.join(restored, "saved_model.pb"), "rb").read() == b"good"
    # The version's TFLite models come back with it.
    assert open(os.path.join(restored, "tflite", "model_float.tflite"), "rb").read() == b"on-device good"
    assert restored != old
    with pytest.raises(ValueError, match="no version 123"):
        serving_dir.rollback(serving, 123)


def test_rollback_command_records_why_and_history_shows_it(tmp_path):
    import json
    import subprocess
    import sys

    from components.contract import PROVENANCE_FILE
    from components.serving import provenance

    serving = str(tmp_path / "serving")

    def pushed(name: str, accuracy: float, replaced) -> dict:
        record = provenance.build(
            examples=None,
            evaluation={"overall": {"sparse_categorical_accuracy": accuracy}},
            config={"pipeline_name": "p", "data_dir": f"/data/{name}"},
            code=provenance.code_version(),
            run_id=f"run-{name}",
            replaced=replaced,
            model_uri=f"/models/{name}",
        )
        return {PROVENANCE_FILE: provenance.dumps(record)}

    good = serving_dir.publish(_model(tmp_path, "good", b"good"), serving, files=pushed("good", 0.91, None))
    bad = serving_dir.publish(_model(tmp_path, "bad", b"bad"), serving, files=pushed("bad", 0.62, good))
    graft = os.path.join(os.path.dirname(sys.executable), "graft")
    result = subprocess.run([graft, "rollback", "--serving-dir", serving], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    restored = serving_dir.newest(serving)
    assert open(os.path.join(restored, "saved_model.pb"), "rb").read() == b"good"
    history = subprocess.run([graft, "history", "--serving-dir", serving, "--json"], capture_output=True, text=True)
    assert history.returncode == 0, history.stderr
    rows = json.loads(history.stdout)
    version = lambda path: int(os.path.basename(path))  # noqa: E731
    assert [r["version"] for r in rows] == [version(good), version(bad), version(restored)]
    assert [r["serving"] for r in rows] == [False, False, True]
    assert [r["reason"] for r in rows] == [
        "blessed by the Evaluator",
        "blessed by the Evaluator",
        f"rolled back to version {version(good)}",
    ]
    # The restored copy keeps what made the model (its run, metrics), and says what it replaced.
    assert rows[2]["pipeline_run_id"] is None and rows[2]["accuracy"] == 0.91
    assert rows[2]["replaced_version"] == str(version(bad)) and rows[1]["replaced_version"] == str(version(good))
    with open(os.path.join(restored, PROVENANCE_FILE)) as f:
        assert json.load(f)["model_uri"] == "/models/good"
    table = subprocess.run([graft, "history", "--serving-dir", serving], capture_output=True, text=True)
    assert table.returncode == 0 and f"{version(restored)} *" in table.stdout and "0.9100" in table.stdout
    missing = subprocess.run(
        [graft, "history", "--serving-dir", str(tmp_path / "none")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "no such directory" in missing.stderr
    empty = subprocess.run([graft, "rollback", "--serving-dir", str(tmp_path / "none")], capture_output=True, text=True)
    assert empty.returncode == 2 and "no earlier version" in empty.stderr
    # A damaged record neither stops a rollback nor `graft history`: it says so.
    with open(os.path.join(restored, PROVENANCE_FILE), "w") as f:
        f.write('{"pushed_at": ')
    again = subprocess.run(
        [graft, "rollback", "--serving-dir", serving, "--to", str(version(restored))], capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    listed = subprocess.run([graft, "history", "--serving-dir", serving, "--json"], capture_output=True, text=True)
    rows = json.loads(listed.stdout)
    assert rows[2]["reason"].startswith("provenance unreadable")
    assert rows[3]["reason"] == f"rolled back to version {version(restored)}"


def test_provenance_keeps_secret_looking_beam_flags_out_of_the_serving_directory():
    from components.serving import provenance

    config = {
        "beam_pipeline_args": ["--runner=DirectRunner", "--s3_secret_access_key=abc", "--aws_session_token", "xyz"],
        "kubeflow": {"beam_pipeline_args": ["--s3_access_key_id=AKIA1"], "image": "graft:1"},
    }
    record = provenance.build(
        examples=None, evaluation={}, config=config, code="graft", run_id="r", replaced=None, model_uri="m"
    )
    assert record["config"]["beam_pipeline_args"] == [
        "--runner=DirectRunner",
        "--s3_secret_access_key=<redacted>",
        "--aws_session_token",
        "<redacted>",
    ]
    assert record["config"]["kubeflow"] == {"beam_pipeline_args": ["--s3_access_key_id=<redacted>"], "image": "graft:1"}
    assert "abc" not in provenance.dumps(record) and "xyz" not in provenance.dumps(record)


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


def _ram_model(name: str, content: bytes) -> str:
    import tensorflow as tf

    root = f"ram://models/{name}"
    for rel, data in (("saved_model.pb", content), ("variables/variables.index", content + b"-index")):
        tf.io.gfile.makedirs(os.path.dirname(f"{root}/{rel}"))
        with tf.io.gfile.GFile(f"{root}/{rel}", "wb") as f:
            f.write(data)
    return root


def _read(path: str) -> bytes:
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def test_object_store_versions_are_complete():
    """TF's gs:// filesystem cannot be pointed at an emulator, so the object-store path runs on
    TF's ram:// filesystem, where a directory "rename" is not atomic either: it left an empty
    version folder, the model lost, before versions were written in place."""
    serving = "ram://serving-complete"
    first = serving_dir.publish(_ram_model("a", b"first"), serving, source="run 1")
    second = serving_dir.publish(_ram_model("b", b"second"), serving)
    assert serving_dir.versions(serving) == [int(first.rsplit("/", 1)[1]), int(second.rsplit("/", 1)[1])]
    assert _read(f"{second}/saved_model.pb") == b"second"
    assert _read(f"{first}/variables/variables.index") == b"first-index"
    assert _read(f"{first}/assets.extra/graft_source.txt") == b"run 1"


def test_object_store_push_killed_mid_copy_shows_no_partial_version(monkeypatch):
    import tensorflow as tf

    serving = "ram://serving-killed"
    first = serving_dir.publish(_ram_model("c", b"first"), serving)
    copy = tf.io.gfile.copy
    copied = []

    def dies_after_the_variables(src, dst, overwrite=False):
        if "/.incoming-" not in dst and copied:  # into the version folder, after one file
            raise KeyboardInterrupt("killed")
        if "/.incoming-" not in dst:
            copied.append(dst)
        return copy(src, dst, overwrite)

    monkeypatch.setattr(tf.io.gfile, "copy", dies_after_the_variables)
    with pytest.raises(KeyboardInterrupt):
        serving_dir.publish(_ram_model("d", b"second"), serving)
    assert copied and not copied[0].endswith("saved_model.pb")  # saved_model.pb goes last
    assert serving_dir.newest(serving) == first  # the partial folder is no version
    monkeypatch.setattr(tf.io.gfile, "copy", copy)
    again = serving_dir.publish(_ram_model("e", b"second"), serving)  # (ram:// appends on rewrite)
    assert serving_dir.newest(serving) == again and _read(f"{again}/saved_model.pb") == b"second"
    assert again != copied[0].rsplit("/", 2)[0]  # the partial folder's number is not reused


_PUBLISH = """
import os, sys, time
from components.serving import serving_dir
copy_tree = serving_dir.copy_tree
def slow_copy(*args):  # a push that takes a second: two started together must overlap
    copy_tree(*args)
    time.sleep(1.0)
serving_dir.copy_tree = slow_copy
open(sys.argv[3] + "." + sys.argv[4], "w").close()
while not all(os.path.exists(sys.argv[3] + "." + n) for n in ("0", "1")):  # both ready, whenever Python started
    time.sleep(0.01)
started = time.time()
path = serving_dir.publish(sys.argv[1], sys.argv[2])
print(path, started, time.time())
"""


@pytest.mark.slow
def test_two_pushes_at_the_same_moment_both_land(tmp_path):
    import subprocess
    import sys

    serving = str(tmp_path / "serving")
    model = _model(tmp_path, "m", b"same model")
    barrier = str(tmp_path / "ready")
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _PUBLISH, model, serving, barrier, str(i)], stdout=subprocess.PIPE, text=True
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].split() for p in processes]
    assert [p.returncode for p in processes] == [0, 0]
    paths = [o[0] for o in outputs]
    (start_a, end_a), (start_b, end_b) = ((float(o[1]), float(o[2])) for o in outputs)
    assert start_a < end_b and start_b < end_a  # the two publishes overlapped in time
    assert len(set(paths)) == 2 and sorted(int(os.path.basename(p)) for p in paths) == serving_dir.versions(serving)
    assert sorted(os.listdir(serving)) == sorted(os.path.basename(p) for p in paths)  # no staging left behind
    for path in paths:
        assert open(os.path.join(path, "saved_model.pb"), "rb").read() == b"same model"


def test_prune_removes_stale_staging_from_killed_pushes(tmp_path):
    serving = tmp_path / "serving"
    serving_dir.publish(_model(tmp_path, "a"), str(serving))
    (serving / ".incoming-1000-deadbeef").mkdir()  # from 1970: a push killed long ago
    (serving / ".incoming-9999999999-cafe").mkdir()  # in the future: a push under way
    serving_dir.prune(str(serving), 5)
    assert sorted(n for n in os.listdir(serving) if n.startswith(".")) == [".incoming-9999999999-cafe"]


def test_serving_check_reads_a_model_on_a_non_local_filesystem():
    import tensorflow as tf

    from components.serving import check

    class Constant(tf.Module):
        def __init__(self):
            super().__init__()
            self.p = tf.Variable([0.25, 0.75])

        def _answer(self, batch):
            return {"probabilities": tf.tile(self.p[None], [tf.shape(batch)[0], 1])}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def by_bytes(self, image_bytes):
            return self._answer(image_bytes)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def by_examples(self, examples):
            return self._answer(examples)

    model, path = Constant(), "ram://check/1"
    tf.saved_model.save(
        model, path, signatures={"serving_default": model.by_examples, "serving_image_bytes": model.by_bytes}
    )
    check.write_check_data(path, [b"a", b"b"], [[0.25, 0.75], [0.25, 0.75]])
    assert check.check_in_this_process(path) == {"images": 2, "max_abs_difference": 0.0, "ok": True}
    check.write_check_data("ram://check/2", [b"a"], [[0.9, 0.1]])
    tf.saved_model.save(
        model, "ram://check/2", signatures={"serving_default": model.by_examples, "serving_image_bytes": model.by_bytes}
    )
    assert check.check_in_this_process("ram://check/2")["ok"] is False
