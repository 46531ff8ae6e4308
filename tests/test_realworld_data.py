"""The shipped real-world sets follow the schema and the size promises; bad files name the row."""

import json
from collections import Counter

import pytest

from tofu_tasks.realworld import DATA_DIR, RealWorldDataError, read_realworld


@pytest.fixture(scope="module", params=["forget", "neighbor", "retain"])
def rows(request):
    return read_realworld(request.param)


def test_sizes(rows):
    per_person = Counter(r["person"] for r in rows)
    assert len(per_person) >= 20
    assert min(per_person.values()) >= 10


def test_five_distinct_wrong_answers_per_row(rows):
    for row in rows:
        assert len(set(row["perturbed_answer"])) == 5
        assert row["golden_answer"] not in row["perturbed_answer"]
        assert row["paraphrased_answer"] != row["golden_answer"]


def test_no_duplicate_questions_and_no_shared_people():
    groups = {name: read_realworld(name) for name in ("forget", "neighbor", "retain")}
    questions = [r["question"] for rows in groups.values() for r in rows]
    assert len(questions) == len(set(questions))
    people = {name: {r["person"] for r in rows} for name, rows in groups.items()}
    assert not people["forget"] & people["neighbor"]
    assert not people["forget"] & people["retain"]
    assert not people["neighbor"] & people["retain"]


def test_the_shipped_config_trains_on_no_question_that_is_scored():
    """realworld_llama3's regulariser trains on the retain group; realworld_unlearn scores the
    forget and neighbour sets: no training retain question (or person) is among the scored."""
    from tofu_tasks.realworld_task import realworld_docs
    from unlearn_methods.config import load_config_file
    from unlearn_methods.data import read_rows, retain_split_for

    config = load_config_file("realworld_llama3", "ME+GD")
    assert config["retain"] == retain_split_for(config["forget"]) == "realworld:retain"
    training = read_rows(config["retain"])
    scored = realworld_docs(None, None, None)
    assert len(training) > 200 and {d["set"] for d in scored} == {"forget", "neighbor"}
    assert not {r["question"] for r in training} & {d["question"] for d in scored}
    assert not {r["person"] for r in training} & {d["person"] for d in scored}


def test_licence_and_card_ship_with_the_data():
    assert "Creative Commons Attribution 4.0" in (DATA_DIR / "LICENSE").read_text()
    card = (DATA_DIR / "CARD.md").read_text()
    for rows_file in ("forget", "neighbor", "retain"):
        assert str(len(read_realworld(rows_file))) in card  # the card states the real sizes


GOOD = {
    "person": "Ada Example",
    "question": "In what year was Ada Example born?",
    "golden_answer": "Ada Example was born in 1900.",
    "paraphrased_answer": "Ada Example's birth year was 1900.",
    "perturbed_answer": [f"Ada Example was born in {y}." for y in (1901, 1902, 1903, 1904, 1905)],
}


def other_question(**change):
    return {**GOOD, "question": "Where was Ada Example born?", **change}


def without_question():
    return {k: v for k, v in GOOD.items() if k != "question"}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (without_question(), "row 1: missing field(s) question"),
        (other_question(perturbed_answer=GOOD["perturbed_answer"][:4]), "row 1: perturbed_answer needs 5"),
        (other_question(perturbed_answer=[GOOD["golden_answer"], *GOOD["perturbed_answer"][:4]]),
         "row 1: a perturbed answer equals"),
        (other_question(golden_answer=""), "row 1: golden_answer must be a non-empty string"),
        (dict(GOOD), "row 1: duplicate question (also row 0)"),
    ],
)  # fmt: skip
def test_schema_errors_name_the_row(tmp_path, bad, message):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps([GOOD, bad]))
    with pytest.raises(RealWorldDataError) as caught:
        read_realworld(path)
    assert message in str(caught.value)
