"""Spans in ML Metadata and on disk: which span a run's examples artifact records, and which
split each text landed in (the spans tests: test_retraining_on_spans_e2e's image runs, test_text_e2e's text runs)."""


def examples_span(metadata_path: str) -> int:
    """The span recorded on the run's examples artifact in ML Metadata."""
    [examples] = examples_artifacts(metadata_path)
    return examples.custom_properties["span"].int_value


def examples_artifacts(metadata_path: str) -> list:
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    return sorted(metadata_store.MetadataStore(connection).get_artifacts_by_type("Examples"), key=lambda a: a.id)


def model_text_splits(uri: str) -> dict:
    """{text as the model reads it (lowercase, as the test config): split} of an examples artifact."""
    import glob
    import os

    import tensorflow as tf

    from components.backbones import text_preprocessing

    found = {}
    for split in ("train", "eval"):
        files = glob.glob(os.path.join(uri, f"Split-{split}", "*"))
        texts = [
            tf.train.Example.FromString(r.numpy()).features.feature["text"].bytes_list.value[0].decode("utf-8")
            for r in tf.data.TFRecordDataset(files, compression_type="GZIP")
        ]
        found.update((t, split) for t in text_preprocessing.model_texts(texts, lowercase=True, max_chars=20_000))
    return found
