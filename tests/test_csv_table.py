"""CSV files users bring (`cnn_zoo.data.csv_table`): the delimiter sniffed from the first lines."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cnn_zoo.data.csv_table import sniff_delimiter


def test_a_csv_of_texts_is_comma_separated_not_split_at_the_spaces_between_words(tmp_path: Path) -> None:
    words = "a film of some length, with a plot that wanders; the acting is fine but the ending drags on and on"
    texts = [f"{words} {i}<br /><br />it was \"good\" or not, {i}" for i in range(60)]
    pd.DataFrame({"text": texts, "label": ["pos", "neg"] * 30}).to_csv(tmp_path / "reviews.csv", index=False)
    assert sniff_delimiter(tmp_path / "reviews.csv") == ","


def test_semicolons_tabs_and_lone_spaces_are_sniffed(tmp_path: Path) -> None:
    for name, delimiter in (("semi.csv", ";"), ("tabs.tsv", "\t"), ("spaces.txt", " ")):
        rows = [delimiter.join(["1.5", "2", "3", "x"]) for _ in range(5)]
        (tmp_path / name).write_text("\n".join(rows) + "\n")
        assert sniff_delimiter(tmp_path / name) == delimiter, name
