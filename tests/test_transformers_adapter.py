"""The transformers ``TrainerCallback`` and the ``transformers`` flavor: a two-layer BERT built
from a config and a tokenizer built from a small vocabulary file (nothing downloaded; conftest
sets ``HF_HUB_OFFLINE``), really fine-tuned on the CPU by a ``Trainer``; training arguments,
metrics, data, the model and tokenizer as one directory loaded back on both stores and
transports, the base model as an input; a hub that cannot be reached only warns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from dl_support import TRANSPORTS, open_hub, unreachable_client, used
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertTokenizer,
    Trainer,
    TrainingArguments,
)

from lineagehub import Client
from lineagehub.ingest.sklearn import AutologWarning
from lineagehub.ingest.transformers import LineageHubCallback, Pretrained, training_params
from lineagehub.vocabulary import RunStatus

WORDS = ["the", "movie", "plot", "was", "good", "great", "bad", "awful"]
TEXTS = ["the movie was good", "the plot was awful", "great movie", "bad plot"] * 4
LABELS = [1, 0, 1, 0] * 4


@pytest.fixture(params=TRANSPORTS)
def hub(request: pytest.FixtureRequest, store_backend: str, tmp_path: Path) -> Iterator[Client]:
    with open_hub(request.param, store_backend, tmp_path) as client:
        yield client


def tokenizer(folder: Path) -> BertTokenizer:
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return BertTokenizer(vocab=str(vocab))


def tiny_bert(tok: BertTokenizer) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16, num_labels=2,
    )  # fmt: skip
    return BertForSequenceClassification(config)


def rows(tok: BertTokenizer) -> list[dict[str, Any]]:
    enc = tok(TEXTS, padding="max_length", max_length=8, truncation=True)
    return [
        {
            "input_ids": torch.tensor(enc["input_ids"][i]),
            "attention_mask": torch.tensor(enc["attention_mask"][i]),
            "labels": torch.tensor(LABELS[i]),
        }
        for i in range(len(TEXTS))
    ]


def fine_tune(
    model: Any, tok: BertTokenizer, callback: LineageHubCallback, out: Path, epochs: int = 2
) -> Trainer:
    data = rows(tok)
    args = TrainingArguments(
        output_dir=str(out), num_train_epochs=epochs, per_device_train_batch_size=4,
        learning_rate=1e-3, logging_steps=2, eval_strategy="epoch", save_strategy="no",
        report_to=[], use_cpu=True, disable_tqdm=True, seed=0,
    )  # fmt: skip
    trainer = Trainer(
        model=model, args=args, train_dataset=data, eval_dataset=data[:4],
        processing_class=tok, callbacks=[callback],
    )  # fmt: skip
    trainer.train()
    return trainer


def test_a_trainer_run_is_logged_and_the_model_and_tokenizer_load_back(
    hub: Client, tmp_path: Path
) -> None:
    tok = tokenizer(tmp_path)
    model = tiny_bert(tok)
    callback = LineageHubCallback(client=hub, project="reviews", model_name="tiny-bert")
    fine_tune(model, tok, callback, tmp_path / "out")

    assert callback.run is not None
    run = hub.get_run(callback.run.id)
    assert run.status is RunStatus.FINISHED and run.project == "reviews"
    assert run.params["learning_rate"] == 1e-3 and run.params["num_train_epochs"] == 2
    assert run.params["per_device_train_batch_size"] == 4
    assert run.params["config.model_type"] == "bert" and run.params["config.num_hidden_layers"] == 2
    assert run.params["model.parameters"] == sum(p.numel() for p in model.parameters())
    assert "output_dir" not in run.params  # where things go on this machine is not a param
    # 8 steps: a loss every 2 steps at the trainer's global step, an evaluation per epoch
    assert [p.step for p in hub.metric_history(run.id, "loss")] == [2, 4, 6, 8]
    assert [p.step for p in hub.metric_history(run.id, "eval_loss")] == [4, 8]

    inputs = used(hub, run.id)
    assert len(inputs["train"]) == 1 and len(inputs["validation"]) == 1

    version = callback.model_version
    assert version is not None and version.flavor == "transformers"
    data = version.metadata["data"]
    assert data["model_type"] == "bert" and data["tokenizer_class"].endswith(":BertTokenizer")
    assert set(version.metadata["environment"]["packages"]) == {"transformers", "tokenizers",
                                                                  "torch"}  # fmt: skip

    loaded = hub.load_model("tiny-bert@1")
    assert isinstance(loaded, Pretrained)
    back, back_tok = loaded
    assert type(back) is BertForSequenceClassification and not back.training
    assert back_tok("the movie was good")["input_ids"] == tok("the movie was good")["input_ids"]
    batch = tok(["great movie"], return_tensors="pt")
    model.eval()
    with torch.no_grad():
        assert torch.allclose(back(**batch).logits, model(**batch).logits)


def test_fine_tuning_a_hub_version_records_it_as_the_base_model(tmp_path: Path) -> None:
    tok = tokenizer(tmp_path)
    with open_hub("embedded", "sqlite", tmp_path) as hub:
        first = LineageHubCallback(client=hub, model_name="tiny-bert")
        fine_tune(tiny_bert(tok), tok, first, tmp_path / "one", epochs=1)
        base, base_tok = hub.load_model("tiny-bert@1")
        second = LineageHubCallback(client=hub, model_name="tiny-bert-tuned",
                                    base_model="tiny-bert@1")  # fmt: skip
        fine_tune(base, base_tok, second, tmp_path / "two", epochs=1)
        assert first.model_version is not None and second.run is not None
        assert used(hub, second.run.id)["base-model"] == [first.model_version.node_id]
        tuned = second.model_version
        assert tuned is not None
        upstream = hub.lineage([tuned.node_id], upstream_depth=2)
        assert first.model_version.node_id in upstream.nodes


def test_a_model_from_the_hugging_face_hub_is_named_as_the_base_model(tmp_path: Path) -> None:
    tok = tokenizer(tmp_path)
    model = tiny_bert(tok)
    # what from_pretrained("google-bert/bert-base-uncased") records on the config
    model.config._name_or_path = "google-bert/bert-base-uncased"
    model.config._commit_hash = "86b5e0934494bd15c9632b12f734a8a67f723594"
    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True)
    params = training_params(args, model)
    assert params["base_model"] == "google-bert/bert-base-uncased"
    assert params["base_model_revision"] == "86b5e0934494bd15c9632b12f734a8a67f723594"
    model.config._name_or_path = str(tmp_path)  # a local folder is not an identifier
    assert "base_model" not in training_params(args, model)


def test_an_unreachable_hub_warns_and_training_goes_on(tmp_path: Path) -> None:
    tok = tokenizer(tmp_path)
    model = tiny_bert(tok)
    before = model.classifier.weight.detach().clone()
    callback = LineageHubCallback(client=unreachable_client(tmp_path))
    with pytest.warns(AutologWarning, match="unreachable"):
        trainer = fine_tune(model, tok, callback, tmp_path / "out", epochs=1)
    assert trainer.state.global_step == 4
    assert not torch.equal(before, model.classifier.weight)
    assert callback.run is None and callback.model_version is None
