"""The course notes' Conv1D on IMDB in Keras: Embedding(10000, 128) - Conv1D(32, 7) - MaxPool1D(5) - Conv1D(32, 7)
- GlobalMaxPool - Dense(1), 500 words per review, batch 128, Adam (cnn_zoo's `data=imdb model=conv1d_text`).

    /work/venv-tf/bin/python scripts/keras_course/imdb.py --epochs 3 --data-dir ../shared/data --cache-dir outputs/cache

`<data-dir>/aclImdb_v1.tar.gz` is extracted once under `--cache-dir`; `keras.utils.text_dataset_from_directory`
reads the reviews (20,000 train / 5,000 validation from the training folder, 25,000 test) and
`TextVectorization` keeps the 10,000 most frequent words, as cnn_zoo's `data.num_words` / `data.max_len`.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import keras
import tensorflow as tf
from keras import layers
from timing import Stamps, arguments, report

NUM_WORDS, MAX_LEN = 10000, 500


def extracted(archive: Path, cache: Path) -> Path:
    """`<cache>/aclImdb`, extracted from the archive on the first call (the data folder stays read-only)."""
    tree = cache / "aclImdb"
    if not (tree / "test" / "neg").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.count("/") == 3 and m.name.endswith(".txt")]
            tar.extractall(cache, members=members, filter="data")
    return tree


def conv1d_text() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input(shape=(MAX_LEN,), dtype="int64"),
            layers.Embedding(NUM_WORDS, 128),
            layers.Conv1D(32, 7, activation="relu"),
            layers.MaxPooling1D(5),
            layers.Conv1D(32, 7, activation="relu"),
            layers.GlobalMaxPooling1D(),
            layers.Dense(1, activation="sigmoid"),
        ]
    )


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], batch_size=128)
    parser.add_argument("--cache-dir", type=Path, default=Path("outputs/cache/keras_imdb"))
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)
    tree = extracted(Path(args.data_dir) / "aclImdb_v1.tar.gz", args.cache_dir)
    common = {"batch_size": args.batch_size, "seed": args.seed}
    train, validation = keras.utils.text_dataset_from_directory(
        tree / "train", validation_split=0.2, subset="both", **common
    )
    test = keras.utils.text_dataset_from_directory(tree / "test", shuffle=False, **common)
    vectorize = layers.TextVectorization(max_tokens=NUM_WORDS, output_sequence_length=MAX_LEN)
    vectorize.adapt(train.map(lambda text, label: text))

    def encoded(dataset: tf.data.Dataset) -> tf.data.Dataset:
        return dataset.map(lambda text, label: (vectorize(text), label), num_parallel_calls=tf.data.AUTOTUNE).cache()

    train, validation, test = encoded(train), encoded(validation), encoded(test)
    model = conv1d_text()
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    stamps = Stamps()
    model.fit(train, epochs=args.epochs, validation_data=validation, callbacks=[stamps], verbose=2)
    _, test_acc = model.evaluate(test, verbose=0)
    report(stamps, test_acc)


if __name__ == "__main__":
    main()
