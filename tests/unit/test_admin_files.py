"""Export cells and files, as values: formula escaping, CR quoting, the temp-file-and-rename."""

from __future__ import annotations

import csv
import io
import os
import stat
from pathlib import Path

import pytest

from gateway.admin_files import ExportFile, export_target
from gateway.admin_rows import CsvWriter, InputError, csv_number, csv_text, csv_unescape


@pytest.mark.parametrize("value, expected", [
    ('=HYPERLINK("http://evil.example","STOP")', '\'=HYPERLINK("http://evil.example","STOP")'),
    ("@SUM(1+1) stop", "'@SUM(1+1) stop"), ("-2+3 STOP", "'-2+3 STOP"), ("+1 call", "'+1 call"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("STOP", "STOP"), ("", ""), ("a=b", "a=b"), ("'x", "'x"),
])
def test_csv_text_escapes_formulas_and_import_reads_it_back(value: str, expected: str) -> None:
    assert csv_text(value) == expected
    assert csv_unescape(expected) == value


@pytest.mark.parametrize("value, expected", [
    ("+14155550123", "+14155550123"), ("+447700900123", "+447700900123"), ("12345", "12345"),
    ("+0123", "'+0123"), ("+1415 555", "'+1415 555"), ("-14155550123", "'-14155550123"),
    ("+1234567890123456", "'+1234567890123456"), ("acme", "acme"),
])
def test_csv_number_keeps_e164_only(value: str, expected: str) -> None:
    assert csv_number(value) == expected


def test_csv_writer_quotes_a_bare_cr() -> None:
    out = io.StringIO()
    writer = CsvWriter(out)
    writer.writerows([("a", "b\rc", 1, 2.5), ("x", "y", 3, None)])
    assert out.getvalue() == 'a,"b\rc",1,2.5\nx,y,3,\n'
    assert list(csv.reader(io.StringIO(out.getvalue(), newline=""))) == [
        ["a", "b\rc", "1", "2.5"], ["x", "y", "3", ""]]


def test_a_failed_export_leaves_the_target_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("before\n")
    with pytest.raises(RuntimeError), ExportFile(export_target(str(target), force=True,
                                                               database_path=None)) as out:
        out.write("half")
        raise RuntimeError("store failed")
    assert target.read_text() == "before\n" and os.listdir(tmp_path) == ["out.csv"]
    with ExportFile(export_target(str(target), force=True, database_path=None)) as out:
        out.write("after\n")
    assert target.read_text() == "after\n" and os.listdir(tmp_path) == ["out.csv"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_file_that_appears_during_the_export_is_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    checked = export_target(str(target), force=False, database_path=None)
    with pytest.raises(InputError, match="file exists"), ExportFile(checked) as out:
        out.write("export\n")
        target.write_text("someone else's\n")
    assert target.read_text() == "someone else's\n" and os.listdir(tmp_path) == ["out.csv"]


def test_a_hard_link_to_the_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    db.write_bytes(b"")
    os.link(db, tmp_path / "copy.csv")
    with pytest.raises(InputError, match="database file"):
        export_target(str(tmp_path / "copy.csv"), force=True, database_path=str(db))
    for name in ("gateway.db-journal", "gateway.db-wal"):
        with pytest.raises(InputError, match="database file"):
            export_target(str(tmp_path / name), force=True, database_path=str(db))
