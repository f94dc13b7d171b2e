"""Names that several stages, the command line and serving clients must agree on.

One module, so that a feature key, an artifact file name or a signature name is written once
(as the TFX taxi template keeps its feature keys in `features.py`). Plain constants: no imports.
"""

# tf.Example features written by ExampleGen and read by Transform, Trainer and Evaluator.
IMAGE_KEY = "image"  # encoded image bytes
TEXT_KEY = "text"  # UTF-8 text (text classification)
LABEL_KEY = "label"  # int64 class index (sorted class names)
LABEL_NAME_KEY = "label_name"  # class name, for slicing the evaluation by class
PATH_KEY = "path"  # source path relative to the data root; hashed for the train/eval split
# Per-example properties ExampleGen records for the drift checks (and StatisticsGen's statistics).
IMAGE_HEIGHT_KEY = "image_height"  # pixels, as decoded
IMAGE_WIDTH_KEY = "image_width"
IMAGE_CHANNELS_KEY = "image_channels"  # in the file: 1 grey, 2 grey + alpha, 3 colour, 4 colour + alpha
IMAGE_FORMAT_KEY = "image_format"  # PNG, JPEG, GIF, BMP, ...
IMAGE_BRIGHTNESS_KEY = "image_brightness"  # mean of the decoded RGB values, 0-255
TEXT_LENGTH_KEY = "text_length"  # words (whitespace-separated)

# Files inside artifacts and model exports.
CLASS_NAMES_FILE = "class_names.json"  # examples artifact and the model's assets.extra
INGEST_DIR = "ingest"  # examples artifact: the ingestion accounting
INGEST_REPORT_FILE = "report.json"
HISTORY_FILE = "history.json"  # Trainer's model_run: per-epoch history
CHOICES_FILE = "training_choices.json"  # Trainer's model_run: what the defaults chose (rates, budgets, carve)
EXTRA_DIR = "assets.extra"  # inside a SavedModel; TF Serving ignores it
SERVING_CHECK_FILE = "graft_check.json"  # assets.extra: the Trainer's own predictions on eval images
SERVING_LIMITS_FILE = (
    "serving_limits.json"  # assets.extra: the limits the graph applies to a request (max_image_pixels, max_text_chars)
)
PROVENANCE_FILE = "provenance.json"  # a pushed version's root: the data, config, code and metrics that made it
SOURCE_FILE = "graft_source.txt"  # assets.extra of a pushed version: which model artifact it came from
SAVED_MODEL_FILE = "saved_model.pb"
TFLITE_DIR = "tflite"  # inside the SavedModel folder: the on-device models that passed their check
TFLITE_CHECK_FILE = "check.json"  # tflite/: accuracy vs the SavedModel, size, latency, failures
TFLITE_LABELS_FILE = "labels.txt"  # tflite/: one class name per line, in output order
TFLITE_CLIENT_FILE = "client.json"  # tflite/: what the device does before calling the model
TFLITE_KINDS = ("float", "int8")


def tflite_file(kind: str) -> str:
    return f"model_{kind}.tflite"


# ServingBaseline's output: the serving version it copied, "" when nothing serves (the
# Evaluator then has no baseline and judges on the absolute bound alone).
SERVING_VERSION_PROPERTY = "serving_version_dir"

# The exported model's serving interface.
EXAMPLES_SIGNATURE = "serving_default"  # serialized tf.Example in (input `examples`)
IMAGE_BYTES_SIGNATURE = "serving_image_bytes"  # encoded image bytes in (input `image_bytes`)
TEXT_SIGNATURE = "serving_text"  # raw UTF-8 strings in (input `text`)
PIXELS_SIGNATURE = "serving_pixels"  # float32 [batch, size, size, 3] RGB in [0, 255], resized; TFLite's source
EMBEDDING_SIGNATURE = "serving_embedding"  # serialized tf.Example in, the features the head reads out
EMBEDDING_OUTPUT = "embedding"
EXAMPLES_INPUT = "examples"
IMAGE_BYTES_INPUT = "image_bytes"
PIXELS_INPUT = "pixels"
TEXT_INPUT = "text"
PROBABILITIES = "probabilities"
CLASS_ID = "class_id"
CLASS_NAME = "class_name"

# Per input kind (a backbone's `kind`): the raw feature, and the signature that takes it raw.
RAW_FEATURE = {"image": IMAGE_KEY, "text": TEXT_KEY}
RAW_SIGNATURE = {"image": IMAGE_BYTES_SIGNATURE, "text": TEXT_SIGNATURE}
RAW_INPUT = {"image": IMAGE_BYTES_INPUT, "text": TEXT_INPUT}

# Exit codes of `graft` and local_runner.py.
EXIT_OK = 0  # done, blessed or not
EXIT_FAILED = 1  # the run failed; the message names the component
EXIT_CONFIG = 2  # a configuration or data-layout problem found before anything ran
EXIT_BUSY = 3  # another run of the same pipeline holds its run lock (graft run --wait to wait for it)

RUN_LOCK_FILE = ".graft-run.lock"  # in the pipeline root: one run of a pipeline at a time
PUBLISH_LOCK_FILE = ".graft-publish.lock"  # in the serving directory: one publish at a time


class ConfigError(ValueError):
    """A configuration problem a user can fix; the message names the option or file."""


# The GPUs a training step (Trainer, Tuner) was given, in its container's environment (set by
# the Kubeflow compiler): the step fails at start when TensorFlow sees fewer.
EXPECTED_GPUS_ENV = "GRAFT_TRAINER_GPUS"

DATA_LISTING_PROPERTY = "data_listing"  # on ImageExampleGen's examples: digest of (path, class) of every file
