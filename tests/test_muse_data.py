"""MUSE's data loader on the conformance kit's fixture (MUSE-News's exact configs, splits and
fields): every split reads with the rows the kit's card lists, and a broken file is named."""

import json
import shutil

import pytest

from tests.conftest import SHARED_DATA
from tofu_tasks.muse.data import MuseDataError, read_split, resolve_data_dir

NEWS = SHARED_DATA.parent / "conformance" / "muse" / "data" / "muse-bench" / "MUSE-News"

# (config, split): (rows, fields), as the kit's README lists them
EXPECTED = {
    ("raw", "forget"): (10, ["text"]),
    ("raw", "retain1"): (10, ["text"]),
    ("raw", "retain2"): (5, ["text"]),
    ("raw", "holdout"): (10, ["text"]),
    ("verbmem", "forget"): (10, ["gt", "prompt"]),
    ("knowmem", "forget_qa"): (20, ["answer", "question"]),
    ("knowmem", "retain_qa"): (20, ["answer", "question"]),
    ("knowmem", "forget_qa_icl"): (3, ["answer", "question"]),
    ("knowmem", "retain_qa_icl"): (3, ["answer", "question"]),
    ("privleak", "forget"): (10, ["text"]),
    ("privleak", "retain"): (10, ["text"]),
    ("privleak", "holdout"): (10, ["text"]),
}


@pytest.mark.parametrize(("config", "split"), sorted(EXPECTED))
def test_every_split_of_the_fixture_reads(config, split):
    rows = read_split("news", config, split, NEWS)
    count, fields = EXPECTED[(config, split)]
    assert len(rows) == count and sorted(rows[0]) == fields


def test_the_rows_are_the_files_rows():
    rows = read_split("news", "verbmem", "forget", NEWS)
    first = json.loads((NEWS / "verbmem" / "forget.jsonl").read_text().splitlines()[0])
    assert rows[0] == first
    # the kit's rule: prompt + " " + gt is the passage (raw/forget)
    passages = read_split("news", "raw", "forget", NEWS)
    assert [r["prompt"] + " " + r["gt"] for r in rows] == [p["text"] for p in passages]


def test_the_environment_names_the_folder(monkeypatch):
    monkeypatch.setenv("MUSE_DATA_DIR", str(NEWS))
    assert resolve_data_dir() == NEWS
    assert len(read_split("news", "knowmem", "forget_qa")) == 20


def test_a_broken_file_is_named_with_its_row_and_field(tmp_path):
    copy = tmp_path / "MUSE-News"
    shutil.copytree(NEWS, copy)
    path = copy / "knowmem" / "forget_qa.jsonl"
    lines = path.read_text().splitlines()
    row = json.loads(lines[3])
    row["answer"] = ""
    lines[3] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MuseDataError, match=r"knowmem/forget_qa\) row 3: field 'answer'"):
        read_split("news", "knowmem", "forget_qa", copy)


def test_unknown_names_and_missing_folders_are_clear_errors(tmp_path):
    with pytest.raises(MuseDataError, match="unknown MUSE corpus 'movies'"):
        read_split("movies", "raw", "forget")
    with pytest.raises(MuseDataError, match="unknown MUSE config 'rawish'"):
        read_split("news", "rawish", "forget", NEWS)
    with pytest.raises(MuseDataError, match="Unknown split"):
        read_split("news", "knowmem", "forget", NEWS)
    with pytest.raises(MuseDataError, match="does not exist"):
        read_split("news", "raw", "forget", tmp_path / "nowhere")
    with pytest.raises(MuseDataError, match="no README.md"):
        read_split("news", "raw", "forget", tmp_path)


def test_offline_without_a_folder_says_how_to_get_one(monkeypatch):
    monkeypatch.delenv("MUSE_DATA_DIR", raising=False)
    with pytest.raises(MuseDataError, match="set MUSE_DATA_DIR"):
        read_split("news", "raw", "forget")


def test_training_reads_a_scalability_split_by_config_and_split(tmp_path, monkeypatch):
    """`muse-news:scal/forget_2` names News's scalability config (a text config the kit's
    fixture lacks: added here to a copy, in the card's own `configs:` format)."""
    from unlearn_methods.data import read_text_rows

    copy = tmp_path / "MUSE-News"
    shutil.copytree(NEWS, copy)
    (copy / "scal").mkdir()
    texts = [{"text": f"scalability text {i}"} for i in range(3)]
    (copy / "scal" / "forget_2.jsonl").write_text("".join(json.dumps(t) + "\n" for t in texts))
    card = (copy / "README.md").read_text()
    entry = (
        "- config_name: scal\n  data_files:\n  - split: forget_2\n    path: scal/forget_2.jsonl\n"
    )
    (copy / "README.md").write_text(card.replace("configs:\n", "configs:\n" + entry, 1))
    monkeypatch.setenv("MUSE_DATA_DIR", str(copy))
    assert read_text_rows("muse-news:scal/forget_2") == texts
    assert read_text_rows("muse-news:forget") == read_split("news", "raw", "forget", copy)
