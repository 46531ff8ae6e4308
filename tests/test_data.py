"""The TOFU data layer: sizes, row selection, hashes and bad input."""

import json

import pytest

from harness_ext.provenance import content_hash
from tofu_tasks import data
from tofu_tasks.data import TofuDataError, build_eval_docs, read_split


def counts(docs):
    out = {}
    for doc in docs:
        out[doc["set"]] = out.get(doc["set"], 0) + 1
    return out


def test_legacy_rows_follow_tofus_first_300_convention():
    assert counts(build_eval_docs("forget01")) == {
        "forget": 40,
        "retain": 300,
        "real_authors": 100,
        "world_facts": 117,
    }
    assert counts(build_eval_docs("forget10"))["forget"] == 300
    full = counts(build_eval_docs("forget10", rows="full"))
    assert full["forget"] == 400 and full["retain"] == 400


def test_docs_carry_the_right_base_answer_per_set(tofu_dir):
    docs = build_eval_docs("forget05", max_rows_per_set=2)
    assert counts(docs) == {"forget": 2, "retain": 2, "real_authors": 2, "world_facts": 2}
    forget_row = read_split("forget05_perturbed")[1]
    doc = next(d for d in docs if d["set"] == "forget" and d["row"] == 1)
    assert doc["base_answer"] == forget_row["paraphrased_answer"]
    assert len(doc["perturbed_answers"]) == 5
    ra = next(d for d in docs if d["set"] == "real_authors")
    assert ra["base_answer"] == ra["answer"] and len(ra["perturbed_answers"]) == 3


def test_forget01_is_the_last_40_rows_of_full():
    full = read_split("full")
    assert [r["question"] for r in read_split("forget01")] == [r["question"] for r in full[-40:]]


def test_content_hash_changes_with_the_rows_and_nothing_else():
    a = content_hash(build_eval_docs("forget01", max_rows_per_set=3))
    assert a == content_hash(build_eval_docs("forget01", max_rows_per_set=3))
    assert a != content_hash(build_eval_docs("forget01", max_rows_per_set=4))


def test_local_files_hash_to_the_pinned_release(tofu_dir):
    for name, digest in data.TOFU_SHA256.items():
        assert data.file_sha256(tofu_dir / name) == digest, name


def rewrite(path, edit):
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


def test_missing_directory_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("TOFU_DATA_DIR", str(tmp_path / "nope"))
    with pytest.raises(TofuDataError, match="does not exist.*TOFU_DATA_DIR"):
        read_split("forget01_perturbed")


def test_explicit_data_dir_wins_over_the_environment(monkeypatch, tofu_copy, tmp_path):
    monkeypatch.setenv("TOFU_DATA_DIR", str(tmp_path / "nope"))
    assert len(read_split("forget01_perturbed", data_dir=tofu_copy)) == 40


def test_missing_file_is_named(tofu_copy):
    (tofu_copy / "world_facts_perturbed.json").unlink()
    with pytest.raises(TofuDataError, match="world_facts_perturbed.json not found"):
        build_eval_docs("forget01", data_dir=tofu_copy)


def test_corrupt_line_is_named(tofu_copy):
    rewrite(
        tofu_copy / "forget01_perturbed.json", lambda ls: ls[:6] + ['{"question": "broken'] + ls[7:]
    )
    with pytest.raises(TofuDataError, match=r"forget01_perturbed.json line 7: not valid JSON"):
        read_split("forget01_perturbed", tofu_copy)


def test_missing_field_names_file_and_row(tofu_copy):
    def drop_paraphrase(lines):
        row = json.loads(lines[3])
        del row["paraphrased_answer"]
        return lines[:3] + [json.dumps(row)] + lines[4:]

    rewrite(tofu_copy / "retain_perturbed.json", drop_paraphrase)
    with pytest.raises(
        TofuDataError,
        match=r"retain_perturbed.json row 3 \(line 4\): missing field 'paraphrased_answer'",
    ):
        read_split("retain_perturbed", tofu_copy)


def test_wrong_perturbed_count_is_reported(tofu_copy):
    def drop_one(lines):
        row = json.loads(lines[0])
        row["perturbed_answer"] = row["perturbed_answer"][:2]
        return [json.dumps(row)] + lines[1:]

    rewrite(tofu_copy / "real_authors_perturbed.json", drop_one)
    with pytest.raises(TofuDataError, match="row 0 .*expected 3 perturbed answers, found 2"):
        read_split("real_authors_perturbed", tofu_copy)


def test_truncated_file_is_not_silently_scored(tofu_copy):
    rewrite(tofu_copy / "forget01_perturbed.json", lambda ls: ls[:39])
    with pytest.raises(TofuDataError, match="expected 40 rows, found 39"):
        build_eval_docs("forget01", data_dir=tofu_copy)


def test_empty_file_is_an_error(tofu_copy):
    (tofu_copy / "forget01_perturbed.json").write_text("\n")
    with pytest.raises(TofuDataError, match="holds no rows"):
        read_split("forget01_perturbed", tofu_copy)


def test_bad_options_are_reported():
    with pytest.raises(TofuDataError, match="unknown forget split"):
        build_eval_docs("forget02")
    with pytest.raises(TofuDataError, match="rows must be"):
        build_eval_docs("forget01", rows="first300")
    with pytest.raises(TofuDataError, match="positive integer"):
        build_eval_docs("forget01", max_rows_per_set=0)


def test_refusals_are_read(tofu_dir):
    refusals = data.read_refusals()
    assert len(refusals) >= 99 and all(r.strip() for r in refusals)


def test_hub_failure_explains_the_fallback(monkeypatch):
    monkeypatch.delenv("TOFU_DATA_DIR", raising=False)
    with pytest.raises(TofuDataError, match="set TOFU_DATA_DIR"):
        read_split("forget01_perturbed")


def test_the_sets_option_scores_only_the_sets_named():
    """Task option sets: the other sets have no documents (and the holdout is not even read);
    names that are no set are refused before any model loads."""
    from harness_ext.lm_eval_plugin.requests import TaskSetupError
    from tofu_tasks.documents import eval_docs
    from tofu_tasks.options import TaskOptions

    def sets_of(**options):
        metadata = {"forget_split": "forget01", "max_rows_per_set": 3,
                    "holdout": "retain_perturbed[390:400]", **options}  # fmt: skip
        docs = eval_docs(TaskOptions.from_metadata(metadata))
        return sorted({d["set"] for d in docs}), len(docs)

    assert sets_of() == (["forget", "holdout", "real_authors", "retain", "world_facts"], 15)
    assert sets_of(sets=["forget", "holdout"]) == (["forget", "holdout"], 6)
    assert sets_of(sets="forget, retain") == (["forget", "retain"], 6)
    # without the holdout set a holdout that cannot be read is never read
    assert sets_of(sets=["forget"], holdout="no-such-file.jsonl") == (["forget"], 3)
    for bad in (["forget", "retian"], [], ""):
        with pytest.raises(TaskSetupError, match="choose among forget, retain"):
            TaskOptions.from_metadata({"forget_split": "forget01", "sets": bad})
