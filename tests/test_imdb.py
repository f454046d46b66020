"""IMDB reviews: tokenisation, vocabulary from train only, pad_sequences, archive/download handling, end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from cnn_zoo.data import imdb
from cnn_zoo.data.imdb import IMDBDataModule
from cnn_zoo.data.spec import DataSpec
from cnn_zoo.data.text import build_vocabulary, encode_texts, pad_sequences, tokenize
from cnn_zoo.evaluate import evaluate
from cnn_zoo.runtime.errors import CnnZooError
from cnn_zoo.train import train
from cnn_zoo.training.inference import load_classifier
from tests.conftest import FAST, require_real
from tests.fixtures_sequences import make_imdb_archive, make_imdb_tree, make_unsafe_archive

TINY_MODEL = [
    "model=conv1d_text",
    "model.net.embedding_dim=16",
    "model.net.filters=[16,16]",
    "model.net.kernel_size=3",
    "model.net.pool_size=2",
]


def datamodule(data_dir: Path, cache_dir: Path, **kwargs) -> IMDBDataModule:
    settings = {"num_words": 1000, "max_len": 40, "val_size": 20, "batch_size": 16} | kwargs
    return IMDBDataModule(data_dir=str(data_dir), cache_dir=str(cache_dir), **settings)


def decode(ids: torch.Tensor, vocab: list[str]) -> list[str]:
    return [vocab[i] for i in ids.tolist() if i != 0]


# ---------------------------------------------------------------------- text
def test_tokenize_lowercases_drops_line_breaks_and_punctuation() -> None:
    text = "Great MOVIE!<br /><br />I didn't like... the end, (really). <BR>10/10 -- café"
    assert tokenize(text) == ["great", "movie", "i", "didn't", "like", "the", "end", "really", "10", "10", "café"]
    assert tokenize("'quoted' words_with_underscores") == ["quoted", "words", "with", "underscores"]


def test_pad_sequences_follows_keras_defaults_and_post_options() -> None:
    sequences = [[1], [2, 3], [4, 5, 6], []]
    assert pad_sequences(sequences, 3).tolist() == [[0, 0, 1], [0, 2, 3], [4, 5, 6], [0, 0, 0]]
    # truncating='pre' keeps the end of a long sequence, 'post' its beginning
    assert pad_sequences([[4, 5, 6]], 2).tolist() == [[5, 6]]
    assert pad_sequences([[4, 5, 6]], 2, truncating="post").tolist() == [[4, 5]]
    assert pad_sequences([[1], [2, 3]], 3, padding="post").tolist() == [[1, 0, 0], [2, 3, 0]]
    with pytest.raises(CnnZooError, match="padding must be 'pre' or 'post'"):
        pad_sequences([[1]], 3, padding="middle")


def test_vocabulary_ranks_by_frequency_and_reserves_padding_and_oov() -> None:
    vocab = build_vocabulary([["b", "a", "c", "a"], ["b", "a", "d"]], num_words=4)
    assert vocab == ["<pad>", "<oov>", "a", "b"]  # 'c' and 'd' tie with one use each: beyond num_words
    facts = {"vocab": vocab, "max_len": 4, "padding": "pre", "truncating": "pre"}
    assert encode_texts(["A c B!"], facts).tolist() == [[0, 2, 1, 3]]


# ---------------------------------------------------------------------- the datamodule
def test_vocabulary_comes_from_the_training_reviews_only(tmp_path: Path) -> None:
    data = make_imdb_tree(tmp_path / "data")
    dm = datamodule(data, tmp_path / "cache")
    dm.setup("fit")
    vocab = set(dm.spec.preprocessing.vocab)
    # every generated review has a unique word: those of the 60 kept training reviews only are in the vocabulary
    assert sum(word.startswith("uniqtrain") for word in vocab) == 80 - 20
    assert not any(word.startswith("uniqtest") for word in vocab)
    for ids, _ in dm.val_set:
        words = decode(ids, dm.spec.preprocessing.vocab)
        assert not any(word.startswith("uniq") for word in words)  # held-out word -> OOV
    assert dm.spec.stats.split_sizes == {"train": 60, "val": 20, "test": 40}
    assert sum(dm.spec.stats.class_counts) == 60
    assert list(dm.spec.input_shape) == [40] and dm.spec.input_dtype == "int64"
    ids, label = dm.train_set[0]
    assert ids.dtype == torch.int64 and ids.shape == (40,) and label.item() in (0, 1)


def test_reviews_are_padded_before_and_truncated_at_the_start_by_default(tmp_path: Path) -> None:
    data = make_imdb_tree(tmp_path / "data", per_class=10, test_per_class=5)
    text = data / "aclImdb" / "test" / "neg" / next(iter(sorted(os.listdir(data / "aclImdb" / "test" / "neg"))))
    words = tokenize(text.read_text())
    for padding, truncating in (("pre", "pre"), ("post", "post")):
        dm = datamodule(
            data, tmp_path / f"cache_{padding}", max_len=5, val_size=4, padding=padding, truncating=truncating
        )
        dm.setup()
        first_test = decode(dm.test_set[0][0], dm.spec.preprocessing.vocab)
        expected = words[-5:] if truncating == "pre" else words[:5]
        assert first_test == [w if w in dm.spec.preprocessing.vocab else "<oov>" for w in expected]
    short = datamodule(data, tmp_path / "cache_long", max_len=200, val_size=4)
    short.setup()
    ids = short.test_set[0][0]
    assert ids[0] == 0 and ids[-1] != 0  # 'pre' padding: zeros first


def test_archive_is_extracted_once_into_the_cache_never_into_the_data_folder(tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "data"
    make_imdb_archive(data)
    before = sorted(p.name for p in data.rglob("*"))
    dm = datamodule(data, tmp_path / "cache")
    dm.setup()
    assert sorted(p.name for p in data.rglob("*")) == before == ["aclImdb_v1.tar.gz"]
    assert dm.tree is not None and dm.tree.is_relative_to(tmp_path / "cache")
    assert not (dm.tree / "README").exists()  # only the reviews are extracted
    assert list((tmp_path / "cache" / "imdb").glob("encoded-*.npz"))

    def fail(*args, **kwargs):
        raise AssertionError("extracted or encoded a second time")

    monkeypatch.setattr(imdb, "extract_reviews", fail)
    monkeypatch.setattr(IMDBDataModule, "encode_all", fail)
    again = datamodule(data, tmp_path / "cache")
    again.setup()
    assert again.spec.preprocessing.vocab == dm.spec.preprocessing.vocab
    assert torch.equal(again.test_set.ids, dm.test_set.ids)


def test_changed_settings_get_their_own_encoded_cache(tmp_path: Path) -> None:
    data = make_imdb_tree(tmp_path / "data", per_class=10, test_per_class=5)
    datamodule(data, tmp_path / "cache", val_size=4).setup()
    datamodule(data, tmp_path / "cache", val_size=4, max_len=7).setup()
    assert len(list((tmp_path / "cache" / "imdb").glob("encoded-*.npz"))) == 2


def test_missing_archive_is_downloaded_into_the_data_folder(tmp_path: Path) -> None:
    source = make_imdb_archive(tmp_path / "mirror")
    data = tmp_path / "data"
    dm = datamodule(data, tmp_path / "cache", url=source.as_uri())
    dm.setup()
    assert (data / "aclImdb_v1.tar.gz").read_bytes() == source.read_bytes()
    assert dm.spec.stats.split_sizes["test"] == 40


def test_failed_download_says_where_it_looked_what_it_tried_and_how_to_fix(tmp_path: Path) -> None:
    url = (tmp_path / "nowhere" / "aclImdb_v1.tar.gz").as_uri()
    with pytest.raises(CnnZooError) as err:
        datamodule(tmp_path / "data", tmp_path / "cache", url=url).setup()
    message = str(err.value)
    assert "\n" not in message
    for part in (
        str(tmp_path / "data" / "aclImdb"),
        "aclImdb_v1.tar.gz",
        f"downloading {url} failed",
        "CNN_ZOO_DATA_DIR",
    ):
        assert part in message
    assert not (tmp_path / "data" / "aclImdb_v1.tar.gz").exists()
    with pytest.raises(CnnZooError, match="download disabled"):
        datamodule(tmp_path / "data", tmp_path / "cache", download=False).setup()


@pytest.mark.parametrize("kind", ["traversal", "absolute", "symlink"])
def test_archive_members_that_could_escape_are_refused(tmp_path: Path, kind: str) -> None:
    data = tmp_path / "data"
    make_unsafe_archive(data / "aclImdb_v1.tar.gz", kind)
    with pytest.raises(CnnZooError, match="refusing to extract .* is unsafe"):
        datamodule(data, tmp_path / "cache").setup()
    assert not list(tmp_path.rglob("escaped.txt")) and not Path("/tmp/cnn_zoo_escaped.txt").exists()
    assert not [p for p in (tmp_path / "cache" / "imdb").iterdir()]  # no half-extracted folder left behind


def test_corrupt_archive_and_incomplete_tree_are_clear_errors(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "aclImdb_v1.tar.gz").write_bytes(b"not a tarball at all")
    with pytest.raises(CnnZooError, match="cannot read archive .* download it again"):
        datamodule(data, tmp_path / "cache").setup()
    tree = make_imdb_tree(tmp_path / "tree", per_class=4, test_per_class=2)
    for review in (tree / "aclImdb" / "test" / "pos").iterdir():
        review.unlink()
    with pytest.raises(CnnZooError, match=r"no reviews in .*test/pos"):
        datamodule(tree, tmp_path / "cache", val_size=2).setup()
    with pytest.raises(CnnZooError, match="val_size=8 leaves no training reviews"):
        datamodule(
            make_imdb_tree(tmp_path / "small", per_class=4, test_per_class=2), tmp_path / "c2", val_size=8
        ).setup()


# ---------------------------------------------------------------------- end to end
def test_train_evaluate_and_a_self_sufficient_checkpoint(compose_cfg, tmp_path: Path) -> None:
    data = make_imdb_archive(tmp_path / "data").parent
    cfg = compose_cfg(
        "data=imdb", f"paths.data_dir={data}", "data.max_len=40", "data.val_size=20", "data.batch_size=16",
        "data.num_words=200", *TINY_MODEL, *FAST, "trainer.max_epochs=10", "optimizer.lr=1e-2", "logger=none",
    )  # fmt: skip
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    assert json.loads((run / "metrics.json").read_text())["test/acc"] == pytest.approx(metrics["test/acc"])
    assert metrics["test/acc"] > 0.8  # the generated reviews carry obvious sentiment words
    vocabulary = (run / "vocabulary.txt").read_text().splitlines()
    assert (
        vocabulary[:2] == ["<pad>", "<oov>"]
        and vocabulary == json.loads((run / "data.json").read_text())["preprocessing"]["vocab"]
    )
    checkpoint = next((run / "checkpoints").glob("epoch_*.ckpt"))
    spec = DataSpec.from_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["hyper_parameters"]["data"])
    text = spec.preprocessing
    assert list(text.vocab) == vocabulary and text.max_len == 40 and text.padding == "pre"
    # the checkpoint alone encodes new text and classifies it
    model = load_classifier(checkpoint)
    texts = ["A superb, wonderful film: loved it!", "Awful. Boring and terrible; I hated it."]
    stored = torch.load(checkpoint, weights_only=True)["hyper_parameters"]["data"]["preprocessing"]
    assert (text.encode(texts) == encode_texts(texts, stored)).all()
    with torch.no_grad():
        probs = model.probabilities(model(torch.from_numpy(text.encode(texts))))
    assert probs[0] > 0.5 > probs[1]
    # evaluate rebuilds the test data from the facts and matches the training run's test
    eval_cfg = compose_cfg(f"ckpt_path={checkpoint}", "logger=none", config_name="evaluate")
    assert evaluate(eval_cfg)["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)


def test_encoding_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(CnnZooError, match="truncating must be 'pre' or 'post'"):
        datamodule(tmp_path, tmp_path, truncating="both")
    with pytest.raises(CnnZooError, match="max_len must be a positive integer"):
        datamodule(tmp_path, tmp_path, max_len=0)


@pytest.mark.real_data
def test_real_imdb_archive_extracts_and_encodes(tmp_path: Path) -> None:
    """The real archive, extracted into a fresh cache; 1,000 reviews per split and class keep it quick."""
    archive = require_real("aclImdb_v1.tar.gz")
    dm = IMDBDataModule(
        data_dir=str(archive.parent), cache_dir=str(tmp_path), download=False, max_reviews=1000, val_size=500
    )
    dm.setup()
    assert dm.spec.stats.split_sizes == {"train": 1500, "val": 500, "test": 2000}
    assert len(dm.spec.preprocessing.vocab) == 10000 and set(dm.spec.preprocessing.vocab[2:5]) == {"the", "and", "a"}
    assert sum(dm.spec.stats.class_counts) == 1500
    assert len(list((dm.tree / "train" / "pos").glob("*.txt"))) == 12500  # every review was extracted
    ids = dm.test_set.ids
    assert ids.shape == (2000, 500) and int(ids.max()) < 10000
    assert float((ids == 1).float().sum() / (ids > 0).float().sum()) < 0.1  # few out-of-vocabulary words
