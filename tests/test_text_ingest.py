"""Text ingestion: every row or file accepted, quarantined with its reason, or skipped by a rule.
The table printed by the first test is the bad-input table of the closing note."""

import bz2
import json

import pytest

from components.example_gen.text_ingest import TextInputError, TextRules, read_text_input

CSV = (
    b"id,text,label\n"
    b'1,"A plain, good sentence.",fresh\n'
    b'2,"Quotes ""inside"", commas, and\na newline inside the field.",rotten\n'
    b"3,,fresh\n"
    b"4,No label here.,\n"
    b"5,Broken \xff\xfe bytes.,rotten\n"
    b"6,Too,many,fields,here\n"
    b"7,A plain; good sentence.,plot\n"
    b"8,A plain, good sentence.,fresh\n"
    b'9,"A plain, good sentence.",rotten\n'
    b"\n"
    b"10," + b"x" * 50 + b",fresh\n"
    b"11,Caf\xc3\xa9 au lait \xe2\x80\x94 fine UTF-8.,fresh\n"
)


def _outcomes(listing):
    rows = [(r.source, "accepted" + (" (truncated)" if r.truncated else ""), r.label) for r in listing.accepted]
    rows += [(q["path"], "quarantined", q["reason"]) for q in listing.quarantined]
    rows += [(s["path"], "skipped", s["reason"]) for s in listing.skipped]
    return {source: (outcome, detail) for source, outcome, detail in rows}


def test_every_csv_row_is_accounted_for(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_bytes(CSV)
    rules = TextRules(max_text_chars=40, labels=("fresh", "rotten"))
    listing = read_text_input(str(path), rules)
    outcomes = _outcomes(listing)
    print("\n| row | outcome | detail |\n|---|---|---|")
    for source, (outcome, detail) in sorted(outcomes.items(), key=lambda kv: int(kv[0].split(":")[1])):
        print(f"| {source} | {outcome} | {detail} |")
    assert outcomes["reviews.csv:2"] == ("accepted", "fresh")
    quoted = [r for r in listing.accepted if r.source == "reviews.csv:3"][0]
    assert quoted.text == 'Quotes "inside", commas, and\na newline inside the field.'[:40] and quoted.truncated
    assert outcomes["reviews.csv:5"] == ("quarantined", "empty text (text)")
    assert outcomes["reviews.csv:6"] == ("quarantined", "missing label (label)")
    assert outcomes["reviews.csv:7"] == ("quarantined", "not UTF-8 (byte 0xff)")
    assert (
        outcomes["reviews.csv:8"][0] == "quarantined" and "5 fields, the header has 3" in outcomes["reviews.csv:8"][1]
    )
    assert outcomes["reviews.csv:9"] == ("skipped", "label 'plot' is not one of the configured labels")
    assert outcomes["reviews.csv:10"][0] == "quarantined"  # unquoted comma: 4 fields
    assert outcomes["reviews.csv:11"] == ("skipped", "duplicate of reviews.csv:2, labelled 'fresh' there")
    assert outcomes["reviews.csv:12"] == ("skipped", "blank line")
    assert outcomes["reviews.csv:13"] == ("accepted (truncated)", "fresh")
    assert outcomes["reviews.csv:14"] == ("accepted", "fresh")
    assert [r.text for r in listing.accepted if r.source == "reviews.csv:14"] == ["Café au lait — fine UTF-8."]
    assert len(outcomes) == 12  # every row of the file (row 3 spans two lines), the header aside
    assert listing.truncated == 2 and listing.classes == ["fresh", "rotten"]

    strict = read_text_input(str(path), TextRules(max_text_chars=40, long_text="quarantine"))
    assert _outcomes(strict)["reviews.csv:13"] == ("quarantined", "text of 50 characters, over max_text_chars=40")


def test_tsv_jsonl_and_compressed_tables_in_a_folder(tmp_path):
    (tmp_path / "a.tsv").write_text('text\tlabel\nTabs, commas, "quotes" alike.\tpos\n', encoding="utf-8")
    lines = [
        json.dumps({"text": "A JSON row.", "label": 1}),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"text": "No label key."}),
        "",
        json.dumps({"text": "Another row.", "label": "neg"}),
    ]
    (tmp_path / "b.jsonl.bz2").write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))
    (tmp_path / "notes.md").write_text("not a table")
    outcomes = _outcomes(read_text_input(str(tmp_path), TextRules()))
    assert outcomes["a.tsv:2"] == ("accepted", "pos")
    assert outcomes["b.jsonl.bz2:1"] == ("accepted", "1")
    assert outcomes["b.jsonl.bz2:2"][1].startswith("malformed row: not JSON")
    assert outcomes["b.jsonl.bz2:3"] == ("quarantined", "malformed row: not a JSON object")
    assert outcomes["b.jsonl.bz2:4"] == ("quarantined", "missing label (label)")
    assert outcomes["b.jsonl.bz2:5"] == ("skipped", "blank line")  # counted, as in CSV
    assert outcomes["b.jsonl.bz2:6"] == ("accepted", "neg")
    assert len([o for o in outcomes if o.startswith("b.jsonl")]) == 6  # and no phantom line after the last
    assert outcomes["notes.md"] == ("skipped", "not a table")


def test_class_folders_of_text_files(tmp_path):
    for label, name, data in [
        ("pos", "a.txt", b"Loved it."),
        ("pos", "b.txt", b""),
        ("neg", "c.txt", b"Hated \xe9 it."),  # Latin-1, not UTF-8
        ("neg", "d.txt", b"Meh."),
        ("neg", ".hidden.txt", b"x"),
        ("neg", "e.csv", b"x"),
    ]:
        (tmp_path / label).mkdir(exist_ok=True)
        (tmp_path / label / name).write_bytes(data)
    (tmp_path / "stray.txt").write_text("outside")
    outcomes = _outcomes(read_text_input(str(tmp_path), TextRules()))
    assert outcomes["pos/a.txt"] == ("accepted", "pos") and outcomes["neg/d.txt"] == ("accepted", "neg")
    assert outcomes["pos/b.txt"] == ("quarantined", "empty text (text)")
    assert outcomes["neg/c.txt"] == ("quarantined", "not UTF-8 (byte 0xe9)")
    assert outcomes["neg/.hidden.txt"] == ("skipped", "hidden file")
    assert outcomes["neg/e.csv"] == ("skipped", "not a .txt file")
    assert outcomes["stray.txt"] == ("skipped", "outside class folders")


def test_a_table_without_the_columns_names_them(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("sentence,sentiment\nx,y\n")
    with pytest.raises(TextInputError, match=r"t.csv: no column 'text', 'label' in the header \(columns: sentence, "):
        read_text_input(str(path), TextRules())
    with pytest.raises(TextInputError, match="no such file"):
        read_text_input(str(tmp_path / "missing.csv"), TextRules())


def test_nul_byte_row_is_quarantined_and_reading_goes_on(tmp_path):
    path = tmp_path / "n.csv"
    path.write_bytes(b"text,label\nfine,a\nbad\x00row,b\nalso fine,b\n")
    outcomes = _outcomes(read_text_input(str(path), TextRules()))
    assert outcomes["n.csv:2"] == ("accepted", "a") and outcomes["n.csv:4"] == ("accepted", "b")
    assert outcomes["n.csv:3"][0] == "quarantined" and "malformed row" in outcomes["n.csv:3"][1]


def test_object_store_paths_are_read_through_gfile():
    """On Kubeflow the text data is on an object store; TensorFlow's ram:// filesystem stands in."""
    import tensorflow as tf

    for path, data in [("ram://texts/pos/a.txt", b"good"), ("ram://texts/neg/b.txt", b"bad \xff")]:
        tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
        with tf.io.gfile.GFile(path, "wb") as f:
            f.write(data)
    listing = read_text_input("ram://texts", TextRules())
    assert [(r.source, r.label) for r in listing.accepted] == [("pos/a.txt", "pos")]
    assert listing.quarantined == [{"path": "neg/b.txt", "class": "neg", "reason": "not UTF-8 (byte 0xff)"}]
    with tf.io.gfile.GFile("ram://tables/r.csv.bz2", "wb") as f:
        f.write(bz2.compress(b"text,label\nhi,a\n"))
    assert [r.text for r in read_text_input("ram://tables/r.csv.bz2", TextRules()).accepted] == ["hi"]


def test_texts_the_model_cannot_tell_apart_are_one_text(tmp_path):
    """Transform reads each text normalised (NFC, whitespace collapsed, lower-cased with
    `lowercase`): variants of one text are duplicates, keyed (and so split) as one."""
    variants = [
        "Great film.",
        "Great  film. ",  # spacing
        "GREAT FILM.",  # case: the same text only with lowercase
        "Caf\u00e9 noir",  # composed é
        "Cafe\u0301 noir",  # decomposed: e + combining acute
        "Great\u00a0film.",  # no-break space
    ]
    path = tmp_path / "t.csv"
    path.write_text("text,label\n" + "".join(f'"{t}",{i % 2}\n' for i, t in enumerate(variants)), encoding="utf-8")
    cased = _outcomes(read_text_input(str(path), TextRules()))
    assert cased["t.csv:3"] == ("skipped", "duplicate of t.csv:2, labelled '0' there")
    assert cased["t.csv:6"] == ("skipped", "duplicate of t.csv:5, labelled '1' there")
    assert cased["t.csv:7"] == ("skipped", "duplicate of t.csv:2, labelled '0' there")
    assert cased["t.csv:4"][0] == "accepted"  # without lowercase, "GREAT FILM." reads differently
    lowered = read_text_input(str(path), TextRules(lowercase=True))
    assert [r.source for r in lowered.accepted] == ["t.csv:2", "t.csv:5"]
    assert [r.model_text for r in lowered.accepted] == ["great film.", "caf\u00e9 noir"]
    # The split key is the text as the model reads it: the same for every variant.
    keys = {r.split_key for r in read_text_input(str(path), TextRules(lowercase=True)).accepted}
    assert len(keys) == 2


def test_split_key_and_transform_read_the_same_text(tmp_path):
    """Parity: ingestion's model text is what the Transform graph (hub_text: the strings the
    encoder reads) makes of the same raw text, the max_text_chars cut included."""
    from components.transform.preprocessing_fn import text_features
    from components.transform.settings import TransformSettings

    raw = ["  Ça  VA\u2003bien ", "Cafe\u0301\tnoir", "x" * 30 + " tail", "\u00c9T\u00c9\n\n\u00e9t\u00e9"]
    path = tmp_path / "p.csv"
    path.write_text("text,label\n" + "".join(f'"{t}",{i % 2}\n' for i, t in enumerate(raw)), encoding="utf-8")
    rules = TextRules(lowercase=True, max_text_chars=24)
    listing = read_text_input(str(path), rules)
    settings = TransformSettings("v", "hub_text", 0, 0, True, 24, 128, 0, "")
    transformed = text_features(tf_constant([r.text for r in listing.accepted]), settings).numpy()
    assert [t.decode() for t in transformed] == [r.model_text for r in listing.accepted]
    assert [r.model_text for r in listing.accepted] == [
        "\u00e7a va bien",
        "caf\u00e9 noir",
        "x" * 24,
        "\u00e9t\u00e9 \u00e9t\u00e9",
    ]
    # Serving reads the raw (uncut) text through the same graph: the same model text.
    served = text_features(tf_constant(raw), settings).numpy()
    assert [t.decode() for t in served] == [r.model_text for r in listing.accepted]


def tf_constant(values):
    import tensorflow as tf

    return tf.constant(values)


def test_graft_predict_reads_folders_of_text_files_and_refuses_empty_texts(tmp_path):
    """`graft predict` takes the training layout (DIR/<class>/*.txt) as the image path takes
    folders: every .txt file under it; an empty text is refused with where it came from."""
    import io

    from components.serving.predict import EMPTY_TEXT, text_items

    for relative, data in [("pos/a.txt", b"Loved it."), ("neg/deep/b.txt", b"Hated it."), ("neg/c.txt", b" \n ")]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(data)
    (tmp_path / "neg" / ".hidden.txt").write_bytes(b"x")
    table = tmp_path / "q.csv"
    table.write_text("id,text\n1," + "y" * 30_000 + "\n2,\n\n", encoding="utf-8")
    items = list(text_items([str(tmp_path), str(table), "-"], stdin=io.StringIO("fine\n\n")))
    where = {w.replace(str(tmp_path) + "/", ""): (raw, error) for w, raw, error in items}
    assert where["pos/a.txt"] == (b"Loved it.", "") and where["neg/deep/b.txt"] == (b"Hated it.", "")
    assert where["neg/c.txt"] == (None, EMPTY_TEXT)
    assert where["q.csv:2"] == (b"y" * 30_000, "")  # whole: the model applies the run's max_text_chars
    assert where["q.csv:3"] == (None, "empty text (text)") and where["q.csv:4"] == (None, "blank line")
    assert where["stdin:1"] == (b"fine", "") and where["stdin:2"] == (None, EMPTY_TEXT)
    assert len(items) == 8  # the hidden file aside


def test_texts_also_in_the_golden_set_are_never_trained_on(tmp_path):
    from components.example_gen.text_executor import drop_golden_texts

    rules = TextRules(lowercase=True)
    (tmp_path / "golden.csv").write_text("text,label\nGREAT  film.,pos\nDull.,neg\n")
    (tmp_path / "train.csv").write_text("text,label\ngreat film.,pos\nA fine cast.,pos\nDull.,neg\nSlow.,neg\n")
    listing = read_text_input(str(tmp_path / "train.csv"), rules)
    settings = type("Settings", (), {"golden_data": str(tmp_path / "golden.csv"), "text_rules": rules})
    drop_golden_texts(listing, settings)
    # As the model reads them (lower-cased, spaces collapsed), two training rows are golden texts.
    assert sorted(r.text for r in listing.accepted) == ["A fine cast.", "Slow."]
    assert {s["path"]: s["reason"] for s in listing.skipped} == {
        "train.csv:2": f"also in the golden set as golden.csv:2 (eval_data {tmp_path}/golden.csv): never trained on",
        "train.csv:4": f"also in the golden set as golden.csv:3 (eval_data {tmp_path}/golden.csv): never trained on",
    }
