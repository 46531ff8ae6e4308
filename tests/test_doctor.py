"""`lm-unlearn doctor` reports what a bug report needs and fails loudly on real problems."""

from harness_ext.commands.cli import main


def test_doctor_offline_reports_fallback_and_missing_nli(capsys):
    code = main(["doctor"])
    out = capsys.readouterr().out
    assert code == 1  # the default NLI model cannot be loaded without the hub
    assert "ok  lm_eval autoload" in out
    assert "finds the tofu_* tasks and --model hf-unlearn" in out
    assert "ok  TOFU data" in out and "files pass their checks" in out
    assert "packaged fallback" in out  # cosine similarity falls back to the packaged MiniLM
    assert "ERR NLI model" in out and "problem(s): NLI model" in out
    assert "torch" in out and "lm_eval" in out


def test_doctor_all_green_with_local_models(tmp_path, capsys):
    from harness_ext.assets import minilm_dir
    from harness_ext.testing.tiny_models import build_tiny_nli

    nli = build_tiny_nli(tmp_path / "nli")
    code = main(["doctor", "--nli-model", str(nli), "--embedding-model", str(minilm_dir())])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ERR" not in out


def test_doctor_reports_a_missing_data_directory(tmp_path, capsys):
    code = main(["doctor", "--data-dir", str(tmp_path / "nowhere"), "--nli-model", "none"])
    out = capsys.readouterr().out
    assert code == 1
    assert "ERR TOFU data" in out and "does not exist" in out


def test_tests_never_read_the_machines_hugging_face_cache():
    import tempfile

    from huggingface_hub import constants

    assert constants.HF_HOME.startswith(tempfile.gettempdir())
    assert "lm-unlearn-tests-hf-" in constants.HF_HOME
