"""The course notes' MNIST networks in Keras: the small CNN (RMSprop, batch 64) or LeNet (Adam, batch 128).

    /work/venv-tf/bin/python scripts/keras_course/mnist.py --model mnist_cnn --epochs 3 --data-dir ../shared/data

Reads the four IDX files of `<data-dir>/MNIST/raw` (keras.datasets.mnist would download them), scales to [0, 1]
as the notes do, holds the last 5,000 training images out for validation (cnn_zoo's split size) and tests on
the 10,000 test images.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import layers
from timing import Stamps, arguments, report


def read_idx(path: Path) -> np.ndarray:
    data = path.read_bytes()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def mnist_cnn() -> keras.Model:
    """The notes' convnet: 93,322 parameters."""
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    )


def lenet() -> keras.Model:
    """LeNet as cnn_zoo's model=lenet: 5x5 convolutions (same padding) with 2x2 average pooling, Dense(500)."""
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(20, 5, padding="same", activation="relu"),
            layers.AveragePooling2D(2),
            layers.Conv2D(50, 5, padding="same", activation="relu"),
            layers.AveragePooling2D(2),
            layers.Flatten(),
            layers.Dense(500, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    )


RECIPES = {"mnist_cnn": (mnist_cnn, "rmsprop", 64), "lenet": (lenet, "adam", 128)}


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], batch_size=0)
    parser.add_argument("--model", choices=sorted(RECIPES), default="mnist_cnn")
    parser.add_argument("--val-size", type=int, default=5000)
    args = parser.parse_args()
    build, optimizer, batch_size = RECIPES[args.model]
    keras.utils.set_random_seed(args.seed)
    raw = Path(args.data_dir) / "MNIST" / "raw"
    images = read_idx(raw / "train-images-idx3-ubyte").reshape(-1, 28, 28, 1).astype("float32") / 255
    labels = read_idx(raw / "train-labels-idx1-ubyte").astype("int64")
    test_images = read_idx(raw / "t10k-images-idx3-ubyte").reshape(-1, 28, 28, 1).astype("float32") / 255
    test_labels = read_idx(raw / "t10k-labels-idx1-ubyte").astype("int64")
    n_train = len(images) - args.val_size
    model = build()
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    stamps = Stamps()
    model.fit(
        images[:n_train],
        labels[:n_train],
        epochs=args.epochs,
        batch_size=args.batch_size or batch_size,
        validation_data=(images[n_train:], labels[n_train:]),
        callbacks=[stamps],
        verbose=2,
    )
    _, test_acc = model.evaluate(test_images, test_labels, batch_size=args.batch_size or batch_size, verbose=0)
    report(stamps, test_acc)


if __name__ == "__main__":
    main()
