"""Tiny, randomly initialised models for tests, benchmarks and offline checks.

They exercise every code path of the tasks and trainers in seconds on a CPU: a Llama-architecture
causal LM with a byte-level BPE tokenizer trained on TOFU text, optionally with a chat template.

>>> path = build_tiny_llama("/tmp/tiny-llama")     # doctest: +SKIP
>>> AutoModelForCausalLM.from_pretrained(path)     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<|end|>"]


def tofu_texts(data_dir: str | Path | None = None, limit: int | None = None) -> list[str]:
    """Questions and answers of TOFU (all splits that carry text), to train a tokenizer."""
    from tofu_tasks.data import read_split

    texts: list[str] = []
    for split in ("full", "real_authors_perturbed", "world_facts_perturbed", "retain_perturbed"):
        for row in read_split(split, data_dir):
            texts += [row["question"], row["answer"], *row.get("perturbed_answer", [])]
            texts += [row["paraphrased_answer"]] if "paraphrased_answer" in row else []
    return texts[:limit] if limit else texts


def build_tokenizer(texts: Iterable[str], vocab_size: int = 2048, chat_template: bool = True):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with BOS/EOS/PAD tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_llama(
    out_dir: str | Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    vocab_size: int = 2048,
    chat_template: bool = True,
    seed: int = 0,
    data_dir: str | Path | None = None,
    tokenizer=None,
    rope_theta: float = 10000.0,
) -> Path:
    """Save a tiny random Llama (and its tokenizer) to ``out_dir`` and return the path."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    if tokenizer is None:
        tokenizer = build_tokenizer(tofu_texts(data_dir), vocab_size, chat_template)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


NLI_LABELS = {0: "entailment", 1: "neutral", 2: "contradiction"}


def build_tiny_nli(out_dir: str | Path, *, hidden_size: int = 32, seed: int = 0) -> Path:
    """A tiny random NLI-shaped classifier (BERT encoder + 3-label head) with the packaged
    MiniLM's WordPiece tokenizer: it exercises the entailment plumbing offline."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from harness_ext.assets import minilm_dir

    out_dir = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=hidden_size * 2,
        num_labels=3,
        id2label=NLI_LABELS,
        label2id={v: k for k, v in NLI_LABELS.items()},
    )
    BertForSequenceClassification(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
