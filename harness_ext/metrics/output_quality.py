"""Output-quality scores of the closer-look paper: token entropy, cosine similarity, entailment.

Cosine similarity needs a sentence-embedding model and entailment an NLI classifier. Each model is
loaded once per process (cached by name and device) and scores all texts of a run in batches, on
the GPU when there is one. The per-sample arithmetic lives in :mod:`harness_ext.metrics.tofu`.

Defaults are the paper's models. When the default embedding model cannot be loaded (no hub access),
cosine similarity falls back to the packaged all-MiniLM-L6-v2 and says so; when no NLI model can be
loaded, entailment is reported as not computed with the reason and the fix, never as 0.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from harness_ext.metrics import tofu as M
from harness_ext.metrics.aggregate import SampleScore, not_computed
from harness_ext.metrics.eval_set import EvalSet

logger = logging.getLogger("lm-unlearn")

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/paraphrase-MiniLM-L6-v2"
DEFAULT_NLI_MODEL = "sileod/deberta-v3-base-tasksource-nli"
DEFAULT_BERTSCORE_MODEL = "roberta-large"
DISABLED = ("", "none", "off", "false")

_LOADED: dict[tuple[str, str, str], Any] = {}


class OutputScoringError(ValueError):
    """An auxiliary model that was asked for explicitly cannot be used."""


def resolve_device(device: str | None = None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _short_error(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text[:200]}"


@dataclass(frozen=True)
class Unavailable:
    """A metric model that could not be loaded: a short value for tables, the detail for logs."""

    value: str  # "N/A (...)", reported as the metric's value
    detail: str  # the full reason and the fix, recorded in the results

    @property
    def name(self) -> str:
        return f"unavailable: {self.detail}"


def _disabled(name: str | None) -> bool:
    return name is not None and str(name).strip().lower() in DISABLED


# ---------------------------------------------------------------- sentence embeddings
@dataclass
class Embedder:
    name: str  # the model that produced the scores
    model: Any
    note: str | None = None  # why it differs from the requested model

    def cosine(
        self, left: Sequence[str], right: Sequence[str], batch_size: int = 64
    ) -> list[float]:
        """max(0, cos) of each (left[i], right[i]) pair; every distinct text is embedded once."""
        import torch

        texts = list(dict.fromkeys([*left, *right]))
        vectors = self.model.encode(
            texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False
        )
        index = {text: i for i, text in enumerate(texts)}
        a = vectors[[index[t] for t in left]]
        b = vectors[[index[t] for t in right]]
        cos = torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1)
        return cos.clamp(min=0.0).tolist()


def _load_once(kind: str, name: str | None, default: str, device: str | None, loader) -> Any:
    """The one loader of the auxiliary models: ``name=none`` disables, no name means the
    default (whose failure falls back or reports, where an explicit name's failure is an error),
    and each (kind, model, device) loads once per process."""
    if _disabled(name):
        return Unavailable(not_computed("disabled"), f"{kind}=none")
    requested = name or default
    device = resolve_device(device)
    key = (kind, requested, device)
    if key not in _LOADED:
        _LOADED[key] = loader(requested, device, explicit=name is not None)
    return _LOADED[key]


def load_embedder(name: str | None = None, device: str | None = None) -> Embedder | Unavailable:
    """The embedding model, the packaged fallback, or why there is none."""
    return _load_once("embedding_model", name, DEFAULT_EMBEDDING_MODEL, device, _load_embedder)


def _load_embedder(requested: str, device: str, explicit: bool) -> Embedder | Unavailable:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        detail = f"sentence-transformers cannot be imported ({_short_error(err)})"
        if explicit:
            raise OutputScoringError(f"{detail}: pip install sentence-transformers") from err
        logger.warning("cosine similarity will not be computed: %s", detail)
        return Unavailable(not_computed("install sentence-transformers"), detail)
    try:
        return Embedder(requested, SentenceTransformer(requested, device=device))
    except Exception as err:
        reason = _short_error(err)
        if explicit:
            raise OutputScoringError(
                f"cannot load the embedding model {requested!r}: {reason}"
            ) from err
    from harness_ext.assets import OFFLINE_EXTRA, AssetError, minilm_dir

    try:
        fallback = minilm_dir()
        model = SentenceTransformer(str(fallback), device=device)
    except (AssetError, OSError) as err:
        detail = f"{requested} failed ({reason}) and {err}; pass embedding_model=<hub id or path>"
        logger.warning("cosine similarity will not be computed: %s", detail)
        return Unavailable(
            not_computed(f"no embedding model; pass embedding_model or {OFFLINE_EXTRA}"), detail
        )
    note = (
        f"{requested} could not be loaded ({reason}); cosine similarity used the packaged "
        f"sentence-transformers/all-MiniLM-L6-v2 instead"
    )
    logger.warning(note)
    return Embedder("sentence-transformers/all-MiniLM-L6-v2 (packaged fallback)", model, note)


# ---------------------------------------------------------------- NLI
@dataclass
class NliClassifier:
    name: str
    model: Any
    tokenizer: Any
    device: str

    def labels(
        self, premises: Sequence[str], hypotheses: Sequence[str], batch_size: int = 32
    ) -> list[str]:
        """Top-1 label name of each (premise, hypothesis) pair."""
        import torch

        names = self.model.config.id2label
        out: list[str] = []
        for start in range(0, len(premises), batch_size):
            batch = self.tokenizer(
                list(premises[start : start + batch_size]),
                list(hypotheses[start : start + batch_size]),
                truncation=True,
                padding=True,
                max_length=512,
                return_tensors="pt",
            ).to(self.device)
            with torch.no_grad():
                top = self.model(**batch).logits.argmax(-1).tolist()
            out += [str(names[i]) for i in top]
        return out


def _entailment_label(model) -> str | None:
    for label in model.config.id2label.values():
        if str(label).strip().lower() == "entailment":
            return str(label)
    return None


def load_nli(name: str | None = None, device: str | None = None) -> NliClassifier | Unavailable:
    """The NLI classifier, or why there is none and how to get one."""
    return _load_once("nli_model", name, DEFAULT_NLI_MODEL, device, _load_nli)


def _load_nli(requested: str, device: str, explicit: bool) -> NliClassifier | Unavailable:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(requested)
        model = AutoModelForSequenceClassification.from_pretrained(requested).to(device).eval()
    except Exception as err:
        reason = _short_error(err)
        if explicit:
            raise OutputScoringError(f"cannot load the NLI model {requested!r}: {reason}") from err
        detail = (
            f"{requested} could not be loaded ({reason}); pass "
            f"nli_model=<hub id or local path of an NLI classifier>"
        )
        logger.warning("entailment will not be computed: %s", detail)
        return Unavailable(not_computed("no NLI model; pass nli_model"), detail)
    if _entailment_label(model) is None:
        raise OutputScoringError(
            f"{requested} is not an NLI classifier: its labels {list(model.config.id2label.values())} "
            f"have no 'entailment'"
        )
    return NliClassifier(requested, model, tokenizer, device)


# ---------------------------------------------------------------- BERTScore (optional)
@dataclass
class BertScorer:
    name: str
    scorer: Any
    note: str | None = None

    def f1(self, candidates: Sequence[str], references: Sequence[str]) -> list[float]:
        _, _, f1 = self.scorer.score(list(candidates), list(references))
        return f1.tolist()


def load_bertscore(name: str | None = None, device: str | None = None) -> BertScorer | Unavailable:
    """The BERTScore model, the packaged fallback, or why there is none."""
    return _load_once("bertscore_model", name, DEFAULT_BERTSCORE_MODEL, device, _load_bertscore)


def _bert_scorer(model: str, device: str):
    from bert_score import BERTScorer
    from bert_score.utils import model2layers

    layers = model2layers.get(model)
    if layers is None:  # a local path: use its last layer
        from transformers import AutoConfig

        layers = AutoConfig.from_pretrained(model).num_hidden_layers
    return BERTScorer(model_type=model, num_layers=layers, device=device)


def _load_bertscore(requested: str, device: str, explicit: bool) -> BertScorer | Unavailable:
    try:
        return BertScorer(requested, _bert_scorer(requested, device))
    except Exception as err:
        reason = _short_error(err)
        if explicit:
            raise OutputScoringError(
                f"cannot load the BERTScore model {requested!r}: {reason}"
            ) from err
    from harness_ext.assets import AssetError, minilm_dir

    try:
        fallback = str(minilm_dir())
        scorer = _bert_scorer(fallback, device)
    except (AssetError, OSError) as err:
        detail = f"{requested} failed ({reason}) and the packaged MiniLM is missing ({err})"
        return Unavailable(not_computed("no BERTScore model; pass bertscore_model"), detail)
    note = (
        f"{requested} could not be loaded ({reason}); BERTScore used the packaged all-MiniLM-L6-v2"
    )
    logger.warning(note)
    return BertScorer(
        "sentence-transformers/all-MiniLM-L6-v2 (packaged fallback, 6 layers)", scorer, note
    )


# ---------------------------------------------------------------- scoring a run's generations
@dataclass(frozen=True)
class GenerationRecord:
    """One document's generation and the texts it is compared with."""

    eval_set: EvalSet  # its rules: what cosine similarity and entailment compare
    generation: str
    ground_truth: str
    rouge_recall: float
    pre_unlearning: str | None = None  # the model's output before unlearning, when known

    @property
    def set_name(self) -> str:
        return self.eval_set.name

    def text(self, source: str) -> str | None:
        return {
            "generation": self.generation,
            "ground_truth": self.ground_truth,
            "pre_unlearning": self.pre_unlearning,
        }[source]


NO_PRE_UNLEARNING = not_computed("no pre_unlearning_reference")


@dataclass
class OutputScorer:
    """Scores generations with a tokenizer (token entropy), an embedder and an NLI model."""

    tokenizer: Any | None
    embedder: Embedder | Unavailable
    nli: NliClassifier | Unavailable
    bertscore: BertScorer | Unavailable | None = None
    tokenizer_name: str | None = None

    @classmethod
    def load(
        cls,
        tokenizer: Any | None,
        embedding_model: str | None = None,
        nli_model: str | None = None,
        device: str | None = None,
        bertscore_model: str | None = None,
        bertscore: bool = False,
        tokenizer_name: str | None = None,
    ) -> OutputScorer:
        return cls(
            tokenizer=tokenizer,
            embedder=load_embedder(embedding_model, device),
            nli=load_nli(nli_model, device),
            bertscore=load_bertscore(bertscore_model, device) if bertscore else None,
            tokenizer_name=tokenizer_name,
        )

    def describe(self) -> dict[str, Any]:
        """Which model produced each metric (recorded in the results)."""

        described = {
            "token_entropy": f"tokenizer of {self.tokenizer_name}"
            if self.tokenizer is not None
            else "unavailable: no tokenizer",
            "cosine_similarity": self.embedder.name,
            "entailment": self.nli.name,
        }
        notes = [getattr(m, "note", None) for m in (self.embedder, self.bertscore)]
        if self.bertscore is not None:
            described["bertscore_f1"] = self.bertscore.name
        if any(notes):
            described["notes"] = [n for n in notes if n]
        return described

    def score(self, records: Sequence[GenerationRecord]) -> list[dict[str, float | str]]:
        """token_entropy, cosine_similarity, entailment (and bertscore_f1) of every record."""
        results: list[dict[str, float | str]] = [{} for _ in records]
        self._token_entropy(records, results)
        self._cosine(records, results)
        self._entailment(records, results)
        if self.bertscore is not None:
            self._bertscore(records, results)
        return results

    def _token_entropy(self, records, results) -> None:
        if self.tokenizer is None:
            for out in results:
                out["token_entropy"] = not_computed("no tokenizer for token entropy")
            return
        ids = self.tokenizer([r.generation for r in records], add_special_tokens=False)
        for out, tokens in zip(results, ids["input_ids"], strict=True):
            out["token_entropy"] = M.token_entropy(tokens)

    def _cosine(self, records, results) -> None:
        todo = []
        for i, record in enumerate(records):
            reference = record.text(record.eval_set.output_reference)
            if isinstance(self.embedder, Unavailable):
                results[i]["cosine_similarity"] = self.embedder.value
            elif reference is None:
                results[i]["cosine_similarity"] = NO_PRE_UNLEARNING
            else:
                todo.append((i, record.generation, reference))
        if todo:
            scores = self.embedder.cosine([t[1] for t in todo], [t[2] for t in todo])
            for (i, _, _), score in zip(todo, scores, strict=True):
                results[i]["cosine_similarity"] = score

    def _entailment(self, records, results) -> None:
        todo = []
        for i, record in enumerate(records):
            premise_source, hypothesis_source = record.eval_set.entailment
            premise, hypothesis = record.text(premise_source), record.text(hypothesis_source)
            if isinstance(self.nli, Unavailable):
                results[i]["entailment"] = self.nli.value
            elif premise is None or hypothesis is None:
                results[i]["entailment"] = NO_PRE_UNLEARNING
            elif record.rouge_recall < M.ENTAILMENT_ROUGE_GATE:
                results[i]["entailment"] = 0.0  # the gate: no NLI call needed
            else:
                todo.append((i, premise, hypothesis))
        if todo:
            labels = self.nli.labels([t[1] for t in todo], [t[2] for t in todo])
            for (i, _, _), label in zip(todo, labels, strict=True):
                results[i]["entailment"] = M.entailment_score(label, records[i].rouge_recall)

    def _bertscore(self, records, results) -> None:
        if isinstance(self.bertscore, Unavailable):
            for out in results:
                out["bertscore_f1"] = self.bertscore.value
            return
        scores = self.bertscore.f1(
            [r.generation for r in records], [r.ground_truth for r in records]
        )
        for out, score in zip(results, scores, strict=True):
            out["bertscore_f1"] = score


def with_output_scores(
    samples: Sequence[SampleScore],
    scorer: OutputScorer,
    pre_unlearning: Mapping[tuple[str, int | None, str], str] | None = None,
) -> list[SampleScore]:
    """The samples with token entropy, cosine similarity and entailment filled in.

    ``pre_unlearning`` maps (set, row, question) to the model's output before unlearning.
    """
    records = [
        GenerationRecord(
            eval_set=s.eval_set,
            generation=s.generation,
            ground_truth=s.target,
            rouge_recall=M.rouge_l_recall(s.generation, s.target),
            pre_unlearning=(pre_unlearning or {}).get((s.set_name, s.row, s.question)),
        )
        for s in samples
    ]
    scores = scorer.score(records)
    return [replace(s, output_scores=score) for s, score in zip(samples, scores, strict=True)]
