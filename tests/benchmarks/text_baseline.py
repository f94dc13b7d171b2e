"""The bar for text: TF-IDF + logistic regression (scikit-learn) on the bundled text sample.

    python -m tests.benchmarks.text_baseline

The sample (Rotten Tomatoes sentences, fresh or rotten) is read by Graft's own text ingestion
(pipeline/sample_text_data.py, components/example_gen/text_ingest.py) and split into train and
eval exactly as the pipeline's ExampleGen splits it (TFX's hash buckets over each text's key,
eval_percent 20), so the number is comparable with the pipeline's eval accuracy. The last line
is one JSON object.
"""

import json
import os
import sys
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import tensorflow as tf  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from tfx.components.example_gen.base_example_gen_executor import _PartitionFn  # noqa: E402

from components.contract import PATH_KEY  # noqa: E402
from components.example_gen.text_ingest import TextRules, read_text_input  # noqa: E402
from pipeline.pipeline import hash_split  # noqa: E402
from pipeline.sample_text_data import write_reviews  # noqa: E402

RULES = TextRules(text_column="text", label_column="category", labels=("fresh", "rotten"))
EVAL_PERCENT = 20


def split_of(record, split_config) -> str:
    """'train' or 'eval', as ExampleGen assigns it (the same partition function and key)."""
    key = tf.train.Feature(bytes_list=tf.train.BytesList(value=[record.split_key.encode()]))
    example = tf.train.Example(features=tf.train.Features(feature={PATH_KEY: key}))
    buckets = [sum(s.hash_buckets for s in split_config.splits[: i + 1]) for i in range(len(split_config.splits))]
    return split_config.splits[_PartitionFn(example, len(buckets), buckets, split_config)].name


def main() -> int:
    listing = read_text_input(write_reviews(), RULES)
    split_config = hash_split(EVAL_PERCENT)
    split_config.partition_feature_name = PATH_KEY
    parts = {"train": [], "eval": []}
    for record in listing.accepted:
        parts[split_of(record, split_config)].append(record)
    print(
        f"text sample: {len(listing.accepted)} accepted, {len(listing.quarantined)} quarantined, "
        f"{len(listing.skipped)} skipped by rule; train {len(parts['train'])}, eval {len(parts['eval'])}",
        flush=True,
    )
    started = time.time()
    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True), LogisticRegression(C=4.0, max_iter=2000)
    )
    model.fit([r.text for r in parts["train"]], [r.label for r in parts["train"]])
    accuracy = model.score([r.text for r in parts["eval"]], [r.label for r in parts["eval"]])
    majority = max(sum(r.label == label for r in parts["eval"]) for label in listing.classes) / len(parts["eval"])
    print(
        json.dumps(
            {
                "baseline": "tfidf(1-2 grams)+logistic_regression",
                "train": len(parts["train"]),
                "eval": len(parts["eval"]),
                "eval_accuracy": round(accuracy, 4),
                "majority_class_accuracy": round(majority, 4),
                "seconds": round(time.time() - started, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
