"""Text ingestion rules: which rows (or files) are labelled texts, and why not.

Inputs: a table (CSV, TSV or JSON Lines; optionally .gz or .bz2 compressed) with a text column
and a label column, a folder of such tables, or class folders of .txt files
(`DIR/<class>/*.txt`, the layout of keras' text_dataset_from_directory). Every row or file seen
ends up accepted, quarantined with its reason, or skipped by a rule (with the rule), so nothing
is dropped silently: the same accounting as for images.

Plain Python for local paths (used by the pre-flight check and `graft predict`); object-store
paths (gs://, s3://: on Kubeflow) are read through tf.io.gfile, imported only for them. The
split and the duplicate check key on what the model reads of a text (its normalised form, run
through the Transform graph's own function), so TensorFlow loads for `read_text_input`.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from typing import Optional

from components import files
from components.example_gen.image_ingest import skip_reason

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson")
COMPRESSION_SUFFIXES = (".gz", ".bz2")
LONG_TEXT_POLICIES = ("truncate", "quarantine")
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that are not UTF-8, as surrogateescape keeps them


@dataclass(frozen=True)
class TextRules:
    """How rows are read and judged (the ExampleGen settings' text part)."""

    text_column: str = "text"
    label_column: str = "label"
    max_text_chars: int = 20_000  # longer texts are truncated or quarantined (long_text)
    long_text: str = "truncate"  # truncate | quarantine
    labels: Optional[list] = None  # only these labels; rows with others are skipped by rule
    label_required: bool = True  # False: texts to classify (graft predict), no label column needed
    lowercase: bool = False  # part of what the model reads (Transform lower-cases): equal texts share a split


@dataclass
class TextRecord:
    text: str
    label: str
    source: str  # "reviews.csv:17" (line of the row's start) or "pos/0001.txt"
    truncated: bool = False
    model_text: str = ""  # what the model reads: text_preprocessing.model_text (set by read_text_input)

    @property
    def split_key(self) -> str:
        """What the train/eval hash split is keyed on: the text as the model reads it, so a
        sentence keeps its split when rows are added, removed or reordered, and texts the model
        cannot tell apart ("Great  film." and "great film." with lowercase) share one."""
        return hashlib.sha1(self.model_text.encode("utf-8")).hexdigest()


@dataclass
class TextListing:
    accepted: list = field(default_factory=list)  # TextRecord
    quarantined: list = field(default_factory=list)  # {"path", "class", "reason"}
    skipped: list = field(default_factory=list)  # {"path", "reason"}

    @property
    def truncated(self) -> int:
        return sum(r.truncated for r in self.accepted)

    @property
    def classes(self) -> list[str]:
        return sorted({r.label for r in self.accepted})


class TextInputError(ValueError):
    """The input as a whole cannot be read as labelled text; the message names the file."""


def table_kind(name: str) -> Optional[str]:
    """'csv', 'tsv' or 'jsonl' for a table file name (compressed or not), else None."""
    base = name.lower()
    for suffix in COMPRESSION_SUFFIXES:
        base = base.removesuffix(suffix)
    for suffix in TABLE_SUFFIXES:
        if base.endswith(suffix):
            return "jsonl" if suffix in (".jsonl", ".ndjson") else suffix[1:]
    return None


def _read_bytes(path: str) -> bytes:
    data = files.read(path)
    if path.lower().endswith(".gz"):
        return gzip.decompress(data)
    if path.lower().endswith(".bz2"):
        return bz2.decompress(data)
    return data


def _judge(listing: TextListing, rules: TextRules, text, label, source: str) -> None:
    """Accepts the row into `listing`, or records why not."""
    label = "" if label is None else str(label).strip()
    text = "" if text is None else str(text)
    bad = _UNDECODABLE.search(text) or _UNDECODABLE.search(label)
    if bad:
        byte = ord(bad.group()) - 0xDC00
        listing.quarantined.append({"path": source, "class": "", "reason": f"not UTF-8 (byte 0x{byte:02x})"})
        return
    if not label and rules.label_required:
        listing.quarantined.append({"path": source, "class": "", "reason": f"missing label ({rules.label_column})"})
        return
    if not text.strip():
        listing.quarantined.append({"path": source, "class": label, "reason": f"empty text ({rules.text_column})"})
        return
    if rules.labels is not None and label not in rules.labels:
        listing.skipped.append({"path": source, "reason": f"label {label!r} is not one of the configured labels"})
        return
    truncated = False
    if len(text) > rules.max_text_chars:
        if rules.long_text == "quarantine":
            listing.quarantined.append(
                {
                    "path": source,
                    "class": label,
                    "reason": f"text of {len(text):,} characters, over max_text_chars={rules.max_text_chars:,}",
                }
            )
            return
        text, truncated = text[: rules.max_text_chars], True
    listing.accepted.append(TextRecord(text, label, source, truncated))


def _read_delimited(path: str, name: str, delimiter: str, rules: TextRules, listing: TextListing) -> None:
    # The csv module refuses fields over 128 KiB; long texts are the length rule's to judge.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    stream = io.TextIOWrapper(io.BytesIO(_read_bytes(path)), encoding="utf-8", errors="surrogateescape", newline="")
    reader = csv.reader(stream, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise TextInputError(f"{path}: empty file, expected a header row") from None
    header = [h.strip().lstrip("\ufeff") for h in header]
    wanted = (rules.text_column, rules.label_column) if rules.label_required else (rules.text_column,)
    missing = [c for c in wanted if c not in header]
    if missing:
        raise TextInputError(
            f"{path}: no column {', '.join(repr(c) for c in missing)} in the header (columns: {', '.join(header)}); "
            "set text_column" + (" and label_column" if rules.label_required else "")
        )
    text_at = header.index(rules.text_column)
    label_at = header.index(rules.label_column) if rules.label_column in header else None
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            listing.quarantined.append({"path": f"{name}:{line}", "class": "", "reason": f"malformed row: {err}"})
            continue
        if not any(cell.strip() for cell in row):
            listing.skipped.append({"path": f"{name}:{line}", "reason": "blank line"})
            continue
        if len(row) != len(header):
            listing.quarantined.append(
                {
                    "path": f"{name}:{line}",
                    "class": "",
                    "reason": f"malformed row: {len(row)} fields, the header has {len(header)} "
                    "(a delimiter inside an unquoted field?)",
                }
            )
            continue
        _judge(listing, rules, row[text_at], row[label_at] if label_at is not None else "", f"{name}:{line}")


def _read_jsonl(path: str, name: str, rules: TextRules, listing: TextListing) -> None:
    lines = _read_bytes(path).split(b"\n")
    if lines and not lines[-1]:
        lines.pop()  # the newline that ends the last line starts no line
    for number, raw in enumerate(lines, 1):
        source = f"{name}:{number}"
        if not raw.strip():
            listing.skipped.append({"path": source, "reason": "blank line"})
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            byte = raw[err.start]
            listing.quarantined.append({"path": source, "class": "", "reason": f"not UTF-8 (byte 0x{byte:02x})"})
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            listing.quarantined.append({"path": source, "class": "", "reason": f"malformed row: not JSON ({err.msg})"})
            continue
        if not isinstance(row, dict):
            listing.quarantined.append({"path": source, "class": "", "reason": "malformed row: not a JSON object"})
            continue
        _judge(listing, rules, row.get(rules.text_column), row.get(rules.label_column), source)


def read_table(path: str, rules: TextRules, listing: TextListing | None = None, name: str = "") -> TextListing:
    """The rows of one CSV, TSV or JSON Lines file (the first row of CSV/TSV is the header)."""
    listing = listing if listing is not None else TextListing()
    name = name or os.path.basename(path)
    kind = table_kind(path)
    if kind == "jsonl":
        _read_jsonl(path, name, rules, listing)
    elif kind in ("csv", "tsv"):
        _read_delimited(path, name, "," if kind == "csv" else "\t", rules, listing)
    else:
        raise TextInputError(f"{path}: not a table Graft reads (.csv, .tsv, .jsonl, optionally .gz or .bz2)")
    return listing


def _read_class_folders(root: str, rules: TextRules, listing: TextListing) -> None:
    for entry in files.listdir(root):
        path = os.path.join(root, entry)
        if not files.isdir(path):
            listing.skipped.append({"path": entry, "reason": skip_reason(entry) or "outside class folders"})
            continue
        if skip_reason(entry):
            listing.skipped.append({"path": entry + "/", "reason": skip_reason(entry)})
            continue
        for dirpath, dirnames, filenames in files.walk(path):
            dirnames.sort()
            for filename in sorted(filenames):
                relative = os.path.relpath(os.path.join(dirpath, filename), root)
                rule = skip_reason(filename) or (None if filename.lower().endswith(".txt") else "not a .txt file")
                if rule:
                    listing.skipped.append({"path": relative, "reason": rule})
                    continue
                data = files.read(os.path.join(dirpath, filename))
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError as err:
                    listing.quarantined.append(
                        {"path": relative, "class": entry, "reason": f"not UTF-8 (byte 0x{data[err.start]:02x})"}
                    )
                    continue
                _judge(listing, rules, text, entry, relative)


def read_text_input(path: str, rules: TextRules) -> TextListing:
    """Everything at `path` (a table, a folder of tables, or class folders of .txt files), with
    duplicates of an accepted text (as the model reads it: normalised, lower-cased with
    `lowercase`) skipped, so the same text is never in both splits."""
    from components.backbones import text_preprocessing  # TensorFlow: the Transform graph's own function

    if not files.exists(path):
        raise TextInputError(f"{path}: no such file or folder")
    listing = TextListing()
    if not files.isdir(path):
        read_table(path, rules, listing)
    else:
        entries = files.listdir(path)
        tables = [e for e in entries if not files.isdir(os.path.join(path, e)) and table_kind(e)]
        if tables:
            for entry in entries:
                if entry in tables:
                    read_table(os.path.join(path, entry), rules, listing, entry)
                else:
                    listing.skipped.append({"path": entry, "reason": skip_reason(entry) or "not a table"})
        else:
            _read_class_folders(path, rules, listing)
    normalised = text_preprocessing.model_texts(
        [r.text for r in listing.accepted], rules.lowercase, rules.max_text_chars
    )
    first_of, kept = {}, []
    for record, model_text in zip(listing.accepted, normalised):
        record.model_text = model_text
        earlier = first_of.setdefault(model_text, record)
        if earlier is record:
            kept.append(record)
        else:
            differs = "" if earlier.label == record.label else f", labelled {earlier.label!r} there"
            listing.skipped.append({"path": record.source, "reason": f"duplicate of {earlier.source}{differs}"})
    listing.accepted = kept
    return listing
