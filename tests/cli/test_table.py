"""Plain-text tables: sized to content, truncated with an ellipsis, safe for terminals."""

from __future__ import annotations

import pytest

from ragtrail.cli._table import Column, format_row, printable, render_table, truncate


def test_columns_are_as_wide_as_their_widest_cell() -> None:
    """Each column is padded to its widest cell or header, two spaces apart."""
    lines = list(render_table(
        [Column("ID", right=True), Column("NAME"), Column("NOTE")],
        [["7", "alpha", "x"], ["1234", "b", "longer note"]],
    ))
    assert lines == [
        "  ID  NAME   NOTE",
        "   7  alpha  x",
        "1234  b      longer note",
    ]


def test_long_cells_are_cut_with_an_ellipsis_at_the_column_maximum() -> None:
    """A cell beyond ``max_width`` ends in '…' and the column is exactly that wide."""
    lines = list(render_table(
        [Column("TEXT", max_width=8), Column("N", right=True)],
        [["abcdefghijkl", "1"], ["short", "22"]],
    ))
    assert lines == [
        "TEXT       N",
        "abcdefg…   1",
        "short     22",
    ]


def test_untruncated_columns_keep_whole_ids() -> None:
    """Columns without a maximum (trace IDs) are never cut."""
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    lines = list(render_table([Column("TRACE ID"), Column("X")], [[trace_id, "y"]]))
    assert lines[1] == f"{trace_id}  y"


def test_no_line_ends_in_whitespace() -> None:
    """The last column is not padded."""
    lines = list(render_table([Column("A"), Column("B")], [["1", ""], ["2", "long"]]))
    assert all(line == line.rstrip() for line in lines)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("line\nbreak", "line\\nbreak"),
        ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),
        ("safe\u202etxt.exe", "safe\\u202etxt.exe"),
        ("tab\there", "tab\\there"),
        ("plain ascii", "plain ascii"),
        ("naïve café", "naïve café"),
    ],
)
def test_control_and_bidi_characters_are_escaped(raw: str, shown: str) -> None:
    """Stored text cannot move the cursor, recolour the terminal or reverse a line."""
    assert printable(raw) == shown
    assert list(render_table([Column("X")], [[raw]]))[1] == shown


def test_wide_characters_count_as_two_columns() -> None:
    """CJK text keeps the next column aligned."""
    lines = list(render_table([Column("NAME"), Column("N")], [["日本", "1"], ["abc", "2"]]))
    assert lines == ["NAME  N", "日本  1", "abc   2"]


def test_truncate_never_splits_a_wide_character_past_the_width() -> None:
    """Cutting stops before a character that would overflow."""
    assert truncate("日本語テキスト", 6) == "日本…"
    assert truncate("abc", 3) == "abc"
    assert truncate("abcd", 3) == "ab…"


def test_fixed_widths_for_streamed_rows() -> None:
    """``format_row`` with given widths pads and cuts, as ``tail`` needs."""
    columns = [Column("A", max_width=5), Column("B", right=True), Column("C", max_width=4)]
    assert format_row(columns, [5, 3, 4], ["abcdefgh", "1", "xyzzy"]) == "abcd…    1  xyz…"
