"""Tests for p2t_screen.fasta: parsing, normalisation, policies and robustness."""

from __future__ import annotations

import gzip
import hashlib
import tempfile
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2t_screen.errors import InputError, P2TError
from p2t_screen.io.fasta import check_fasta, parse_fasta_text, read_fasta, scan_fasta
from p2t_screen.io.records import (
    ENCODER_ALPHABET,
    OnInvalid,
    OnLong,
    ReadPolicy,
    Record,
    Status,
    records_from_sequences,
)

SKIP = ReadPolicy(on_invalid=OnInvalid.SKIP)
X = ReadPolicy(on_invalid=OnInvalid.X)
DEFAULT = ReadPolicy()


def write(tmp_path: Path, data: bytes, name: str = "in.fasta") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read(path: Path, policy: ReadPolicy = DEFAULT) -> list[Record]:
    return list(read_fasta(path, policy))


def brief(records: list[Record]) -> list[tuple[str, str, Status]]:
    return [(r.seq_id, r.sequence, r.status) for r in records]


# --- basics ---------------------------------------------------------------


def test_constants_and_enums() -> None:
    assert ENCODER_ALPHABET == frozenset("ACDEFGHIKLMNPQRSTVWYXBUZO")
    assert [s.value for s in Status] == ["ok", "invalid", "empty", "too_long", "oom", "error"]
    assert Status("too_long") is Status.TOO_LONG and Status.OK == "ok"
    assert issubclass(InputError, P2TError)


def test_policy_defaults_validation_and_string_coercion() -> None:
    policy = ReadPolicy()
    assert (policy.on_invalid, policy.on_long, policy.max_residues) == (
        OnInvalid.ERROR,
        OnLong.TRUNCATE,
        1022,
    )
    coerced = ReadPolicy(on_invalid="x", on_long="skip")  # type: ignore[arg-type]
    assert coerced.on_invalid is OnInvalid.X and coerced.on_long is OnLong.SKIP
    for bad in (0, -5):
        with pytest.raises(ValueError):
            ReadPolicy(max_residues=bad)
    with pytest.raises(ValueError):
        ReadPolicy(on_invalid="drop")  # type: ignore[arg-type]


def test_plain_file_fields(tmp_path: Path) -> None:
    path = write(tmp_path, b">sp|P1|A  first protein \nMKT\nAYI\n>P2\nGGG\n")
    first, second = read(path)
    header = "sp|P1|A  first protein"
    assert first == Record(0, "sp|P1|A", header, "MKTAYI", Status.OK, None, 6, False)
    assert second.input_index == 1 and second.seq_id == "P2" and second.sequence == "GGG"
    assert first.used_sequence == "MKTAYI"
    assert first.seq_hash == hashlib.sha256(b"MKTAYI").hexdigest()


def test_gzip_detected_by_magic_not_name(tmp_path: Path) -> None:
    data = b">a\nMKV\n>b\nAC\n"
    expected = [("a", "MKV", Status.OK), ("b", "AC", Status.OK)]
    assert brief(read(write(tmp_path, gzip.compress(data), "x.fasta.gz"))) == expected
    assert brief(read(write(tmp_path, gzip.compress(data), "x.fasta"))) == expected
    assert brief(read(write(tmp_path, data, "plain.fa.gz"))) == expected


def test_multimember_gzip(tmp_path: Path) -> None:
    path = write(tmp_path, gzip.compress(b">a\nMK") + gzip.compress(b"V\n>b\nAC\n"), "m.gz")
    assert brief(read(path)) == [("a", "MKV", Status.OK), ("b", "AC", Status.OK)]


@pytest.mark.parametrize("cut", [5, 20, -3])
def test_truncated_gzip_is_input_error(tmp_path: Path, cut: int) -> None:
    blob = gzip.compress(b">a\n" + b"MKV" * 5000 + b"\n")
    path = write(tmp_path, blob[:cut], "t.fa.gz")
    with pytest.raises(InputError, match=r"t\.fa\.gz.*truncated or corrupt"):
        read(path, SKIP)
    with pytest.raises(InputError, match="truncated or corrupt"):
        check_fasta(path, SKIP)


def test_corrupt_gzip_is_input_error(tmp_path: Path) -> None:
    blob = bytearray(gzip.compress(b">a\n" + b"MKV" * 100 + b"\n"))
    blob[15:25] = b"\xff" * 10
    with pytest.raises(InputError, match="truncated or corrupt"):
        read(write(tmp_path, bytes(blob), "c.gz"), SKIP)


def test_missing_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        read(tmp_path / "nope.fa")
    with pytest.raises(InputError, match="cannot read"):
        check_fasta(tmp_path, DEFAULT)


# --- line handling ----------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_line_endings(tmp_path: Path, eol: bytes) -> None:
    data = eol.join([b"", b"", b">a desc", b"MK", b"", b"TA", b"", b">b", b"GG", b""])
    records = read(write(tmp_path, data))
    assert brief(records) == [("a", "MKTA", Status.OK), ("b", "GG", Status.OK)]
    assert records[0].header == "a desc"


def test_utf8_bom_is_ignored(tmp_path: Path) -> None:
    assert brief(read(write(tmp_path, b"\xef\xbb\xbf>a\nMK\n"))) == [("a", "MK", Status.OK)]


@pytest.mark.parametrize("data", [b"", b"\n\n  \r\n\t\n"])
def test_empty_file_yields_nothing(tmp_path: Path, data: bytes) -> None:
    path = write(tmp_path, data)
    assert read(path) == []
    assert check_fasta(path, DEFAULT) == 0


def test_text_before_first_header_is_not_fasta(tmp_path: Path) -> None:
    path = write(tmp_path, b"\n\nMKV\n>a\nMK\n")
    msg = r"line 3: expected a FASTA header starting with '>'"
    with pytest.raises(InputError, match=msg):
        read(path, SKIP)
    with pytest.raises(InputError, match=msg):
        check_fasta(path, SKIP)


def test_binary_garbage_without_header(tmp_path: Path) -> None:
    path = write(tmp_path, bytes(range(256)) * 4, "garbage.bin")
    with pytest.raises(InputError, match="line 1: expected a FASTA header"):
        read(path, SKIP)


def test_non_utf8_header_bytes(tmp_path: Path) -> None:
    (rec,) = read(write(tmp_path, b">id\xff\xfe caf\xc3\xa9 \x80\nMK\n"))
    assert rec.seq_id == "id\ufffd\ufffd"
    assert rec.header == "id\ufffd\ufffd caf\u00e9 \ufffd"
    assert rec.status is Status.OK


def test_header_without_id_and_duplicate_ids(tmp_path: Path) -> None:
    records = read(write(tmp_path, b">\nMK\n>   \nAC\n>d x\nGG\n>d y\nGG\n"))
    assert [(r.input_index, r.seq_id, r.header) for r in records] == [
        (0, "", ""),
        (1, "", ""),
        (2, "d", "d x"),
        (3, "d", "d y"),
    ]
    assert records[2].seq_hash == records[3].seq_hash


# --- normalisation ----------------------------------------------------------


def test_lowercase_internal_whitespace_and_trailing_star() -> None:
    (rec,) = parse_fasta_text(">a\nmk t\tv\nay*\n", DEFAULT)
    assert rec.sequence == "MKTVAY" and rec.status is Status.OK


def test_only_one_trailing_star_is_dropped() -> None:
    (rec,) = parse_fasta_text(">a\nMK**\n", SKIP)
    assert rec.status is Status.INVALID
    assert rec.sequence == "MK*"
    assert rec.error == "invalid character '*' at position 3"


def test_internal_star_is_invalid() -> None:
    (rec,) = parse_fasta_text(">a\nMK*TV\n", SKIP)
    assert (rec.status, rec.error, rec.residues_used) == (
        Status.INVALID,
        "invalid character '*' at position 3",
        0,
    )


@pytest.mark.parametrize("body", ["", "*", "\n\n"])
def test_empty_record_under_every_policy(body: str) -> None:
    for on_invalid in OnInvalid:
        for on_long in OnLong:
            policy = ReadPolicy(on_invalid, on_long)
            (rec,) = parse_fasta_text(f">e\n{body}\n", policy)
            assert (rec.sequence, rec.status, rec.error) == ("", Status.EMPTY, "empty sequence")
            assert rec.residues_used == 0 and rec.used_sequence == ""


def test_empty_record_between_others() -> None:
    records = parse_fasta_text(">a\n>b\nMK\n>c\n", DEFAULT)
    assert brief(records) == [
        ("a", "", Status.EMPTY),
        ("b", "MK", Status.OK),
        ("c", "", Status.EMPTY),
    ]


# --- on_invalid ---------------------------------------------------------------


def test_on_invalid_error_names_record_id_char_and_position(tmp_path: Path) -> None:
    path = write(tmp_path, b">ok\nMK\n>bad one\nMKTA1V\n>later\nZZ9\n")
    it = read_fasta(path, DEFAULT)
    assert next(it).seq_id == "ok"
    with pytest.raises(InputError) as info:
        next(it)
    msg = str(info.value)
    assert "record 2" in msg and "'bad'" in msg
    assert "invalid character '1' at position 5" in msg


def test_on_invalid_skip_marks_record() -> None:
    records = parse_fasta_text(">a\nMK-V\n>b\nMJ\n>c\nMK\n", SKIP)
    assert brief(records) == [
        ("a", "MK-V", Status.INVALID),
        ("b", "MJ", Status.INVALID),
        ("c", "MK", Status.OK),
    ]
    assert records[0].error == "invalid character '-' at position 3"
    assert records[1].error == "invalid character 'J' at position 2"
    assert records[0].residues_used == 0 and not records[0].truncated


def test_on_invalid_x_replaces_letters_only() -> None:
    records = parse_fasta_text(">a\nmjkj\n>b\nMJ.K\n", X)
    assert (records[0].sequence, records[0].status, records[0].error) == ("MXKX", Status.OK, None)
    assert records[0].seq_hash == hashlib.sha256(b"MXKX").hexdigest()
    assert records[1].status is Status.INVALID
    assert records[1].error == "invalid character '.' at position 3"


def test_garbage_bytes_in_sequence_are_invalid_characters(tmp_path: Path) -> None:
    (rec,) = read(write(tmp_path, b">a\nMK\xc3\x9fV\x00\n"), SKIP)
    # 'ß' must not be upper-cased into the valid letters 'SS'.
    assert rec.status is Status.INVALID
    assert rec.error == "invalid character '\u00c3' at position 3"


# --- on_long ------------------------------------------------------------------


def test_on_long_truncate() -> None:
    (rec,) = parse_fasta_text(">a\nMKTAYIAK\n", ReadPolicy(max_residues=5))
    assert (rec.status, rec.sequence) == (Status.OK, "MKTAYIAK")
    assert (rec.residues_used, rec.truncated) == (5, True)
    assert rec.used_sequence == "MKTAY"
    assert rec.seq_hash == hashlib.sha256(b"MKTAYIAK").hexdigest()


def test_on_long_exact_limit_is_not_truncated() -> None:
    (rec,) = parse_fasta_text(">a\nMKTAY\n", ReadPolicy(max_residues=5))
    assert (rec.residues_used, rec.truncated) == (5, False)


def test_on_long_skip() -> None:
    policy = ReadPolicy(on_long=OnLong.SKIP)
    (rec,) = parse_fasta_text(">a\n" + "A" * 1500 + "\n", policy)
    assert rec.status is Status.TOO_LONG
    assert rec.error == "sequence of 1500 residues exceeds the encoder limit of 1022"
    assert (rec.residues_used, rec.truncated, len(rec.sequence)) == (0, False, 1500)


def test_on_long_error(tmp_path: Path) -> None:
    policy = ReadPolicy(on_long=OnLong.ERROR, max_residues=3)
    path = write(tmp_path, b">a\nMK\n>b\nMKTA\n")
    with pytest.raises(InputError, match=r"record 2 \(id 'b'\): sequence of 4 residues exceeds"):
        read(path, policy)


def test_invalid_takes_precedence_over_length() -> None:
    policy = ReadPolicy(on_invalid="skip", on_long="skip", max_residues=3)  # type: ignore[arg-type]
    (rec,) = parse_fasta_text(">a\nMK1AAAAA\n", policy)
    assert rec.status is Status.INVALID


# --- check_fasta ----------------------------------------------------------------


def test_check_fasta_counts_all_records(tmp_path: Path) -> None:
    path = write(tmp_path, b">a\nMK\n>b\n\n>c\nMK1\n")
    assert check_fasta(path, SKIP) == 3


def test_check_fasta_collects_problems(tmp_path: Path) -> None:
    data = b">a\nMK\n>b\nM1\n>c\nMKV\n>\nM-\n>e x\nMKTAYIAKQR\n"
    path = write(tmp_path, data)
    policy = ReadPolicy(on_long=OnLong.ERROR, max_residues=8)
    with pytest.raises(InputError) as info:
        check_fasta(path, policy)
    lines = str(info.value).splitlines()
    assert "3 record(s) rejected" in lines[0]
    assert lines[1:] == [
        "  record 2 (id 'b'): invalid character '1' at position 2",
        "  record 4 (no id): invalid character '-' at position 2",
        "  record 5 (id 'e'): sequence of 10 residues exceeds the encoder limit of 8",
    ]


def test_check_fasta_caps_problem_list(tmp_path: Path) -> None:
    path = write(tmp_path, b"".join(b">r%d\nM%d\n" % (i, i % 10) for i in range(25)))
    with pytest.raises(InputError) as info:
        check_fasta(path, DEFAULT, max_problems=4)
    lines = str(info.value).splitlines()
    assert "25 record(s)" in lines[0]
    assert lines[1] == "  record 1 (id 'r0'): invalid character '0' at position 2"
    assert len(lines) == 6 and lines[-1] == "  and 21 more"


def test_check_fasta_allowed_problems_do_not_raise(tmp_path: Path) -> None:
    path = write(tmp_path, b">a\nM1\n>b\n" + b"A" * 50 + b"\n")
    assert check_fasta(path, ReadPolicy(on_invalid="skip", on_long="skip", max_residues=10)) == 2
    with pytest.raises(ValueError):
        check_fasta(path, SKIP, max_problems=0)


# --- scan_fasta: one pass that checks, yields and hashes ---------------------------

LIBRARY = b">a one\nMKTAYIAKQR\n>b\nM1\n>c\n" + b"ACDEFGHIK" * 500 + b"\n"


@pytest.mark.parametrize("stored", [
    LIBRARY,
    gzip.compress(LIBRARY),
    gzip.compress(LIBRARY[:20]) + gzip.compress(LIBRARY[20:]),  # two gzip members
    gzip.compress(LIBRARY) + b"\0" * 1000,  # zero padding after the last member
], ids=["plain", "gzip", "multimember", "padded"])
def test_scan_fasta_digest_is_the_sha256_of_the_file_as_stored(tmp_path: Path, stored: bytes) -> None:
    path = write(tmp_path, stored)
    digest = hashlib.sha256()
    records = list(scan_fasta(path, SKIP, digest))
    assert digest.hexdigest() == hashlib.sha256(stored).hexdigest()
    assert records == read(path, SKIP)  # the records read_fasta gives, in one pass with the hash


def test_scan_fasta_yields_every_record_then_names_each_rejected_one(tmp_path: Path) -> None:
    path = write(tmp_path, b">a\nMK\n>b\nM1\n>c\nMKV\n>d\nM2\n")
    seen = []
    with pytest.raises(InputError) as info:
        for record in scan_fasta(path, DEFAULT):
            seen.append(record.seq_id)
    assert seen == ["a", "b", "c", "d"]  # the whole file is checked before the error
    assert str(info.value).splitlines()[1:] == [
        "  record 2 (id 'b'): invalid character '1' at position 2",
        "  record 4 (id 'd'): invalid character '2' at position 2",
    ]


# --- records_from_sequences ---------------------------------------------------------


def test_records_from_sequences_pairs_and_bare() -> None:
    records = list(records_from_sequences([("p1 x", "mk t*"), "ACD", ("p3", "")], DEFAULT))
    assert [(r.input_index, r.seq_id, r.header, r.sequence, r.status) for r in records] == [
        (0, "p1 x", "p1 x", "MKT", Status.OK),
        (1, "seq2", "seq2", "ACD", Status.OK),
        (2, "p3", "p3", "", Status.EMPTY),
    ]


def test_records_from_sequences_policies() -> None:
    assert list(records_from_sequences(["MJ"], X))[0].sequence == "MX"
    (skipped,) = records_from_sequences(["M\u00dfK"], SKIP)
    assert skipped.status is Status.INVALID
    assert skipped.error == "invalid character '\u00df' at position 2"
    with pytest.raises(InputError, match=r"record 2 \(id 'seq2'\): invalid character '1'"):
        list(records_from_sequences(["MK", "M1"], DEFAULT))
    (long,) = records_from_sequences(["MKTA"], ReadPolicy(max_residues=2))
    assert long.used_sequence == "MK" and long.truncated


# --- scale --------------------------------------------------------------------------


def test_long_sequence(tmp_path: Path) -> None:
    seq = "MKTAYIAKQR" * 10_000
    lines = "\n".join(seq[i : i + 60] for i in range(0, len(seq), 60))
    (rec,) = read(write(tmp_path, f">big\n{lines}\n".encode()))
    assert rec.sequence == seq and rec.residues_used == 1022 and rec.truncated


def test_many_records_stream_in_bounded_memory(tmp_path: Path) -> None:
    n = 100_000
    path = write(tmp_path, b">r\nMK\n" * n)
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_fasta(path, DEFAULT))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n
    assert peak < 2_000_000  # the file is 600 kB; holding all records would take far more


# --- properties ---------------------------------------------------------------------

# Ids are single words: no whitespace (Z) or control/surrogate characters (C).
ids = st.text(
    alphabet=st.characters(max_codepoint=0x2FF, blacklist_categories=("Z", "C")),
    min_size=1,
    max_size=12,
)
residues = st.text(alphabet="".join(sorted(ENCODER_ALPHABET)), max_size=200)
entries = st.lists(st.tuples(ids, residues, st.booleans()), max_size=15)


@settings(max_examples=150, deadline=None)
@given(
    entries=entries,
    width=st.integers(min_value=1, max_value=80),
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
    lower=st.booleans(),
    blank_lines=st.booleans(),
    compress=st.booleans(),
)
def test_roundtrip_property(entries, width, eol, lower, blank_lines, compress) -> None:
    out: list[str] = []
    for seq_id, seq, star in entries:
        out.append(f">{seq_id} description")
        text = (seq.lower() if lower else seq) + ("*" if star else "")
        out += [text[i : i + width] for i in range(0, len(text), width)]
        if blank_lines:
            out.append("")
    data = (eol.join(out) + eol).encode("utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.fa"
        path.write_bytes(gzip.compress(data) if compress else data)
        records = read(path, ReadPolicy(max_residues=10_000))
    expected = [(i, s, q, Status.OK if q else Status.EMPTY) for i, (s, q, _) in enumerate(entries)]
    assert [(r.input_index, r.seq_id, r.sequence, r.status) for r in records] == expected
    assert all(r.header == f"{r.seq_id} description" for r in records)
    assert all(r.used_sequence == r.sequence for r in records)


arbitrary = st.one_of(
    st.binary(max_size=400),
    st.binary(max_size=400).map(lambda b: b">" + b),
    st.binary(max_size=400).map(gzip.compress),
    # Truncated gzip streams of FASTA-looking content.
    st.tuples(st.binary(max_size=400), st.integers(0, 60)).map(
        lambda t: gzip.compress(b">x\n" + t[0])[: t[1]]
    ),
)


@settings(max_examples=300, deadline=None)
@given(data=arbitrary, on_long=st.sampled_from(list(OnLong)))
def test_arbitrary_bytes_only_raise_input_error(data: bytes, on_long: OnLong) -> None:
    policy = ReadPolicy(on_invalid=OnInvalid.SKIP, on_long=on_long, max_residues=8)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz"
        path.write_bytes(data)
        try:
            records = read(path, policy)
        except InputError:
            return
    for rec in records:
        assert rec.status in {Status.OK, Status.INVALID, Status.EMPTY, Status.TOO_LONG}
        assert set(rec.used_sequence) <= ENCODER_ALPHABET
        assert (rec.status is Status.OK) == (rec.error is None)
