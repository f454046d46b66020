"""The course notes' cats-vs-dogs convnet from scratch in Keras: 180x180, batch 32, RMSprop, no augmentation.

    /work/venv-tf/bin/python scripts/keras_course/catsdogs.py --epochs 3 --data-dir ../shared/data

The images come from `<data-dir>/cats_and_dogs_small/{train,validation,test}` through
`keras.utils.image_dataset_from_directory`, decoded on every epoch, as in the notes.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers
from timing import Stamps, arguments, report

IMAGE_SIZE = (180, 180)


def small_cnn() -> keras.Model:
    """The notes' network: Conv(32, 64, 128, 256, 256) with max pooling between, Flatten, Dense(1): 991,041."""
    stack: list = [keras.Input(shape=(*IMAGE_SIZE, 3)), layers.Rescaling(1.0 / 255)]
    for index, filters in enumerate((32, 64, 128, 256, 256)):
        stack.append(layers.Conv2D(filters, 3, activation="relu"))
        if index < 4:
            stack.append(layers.MaxPooling2D(2))
    stack += [layers.Flatten(), layers.Dense(1, activation="sigmoid")]
    return keras.Sequential(stack)


def main() -> None:
    args = arguments(__doc__.splitlines()[0], batch_size=32).parse_args()
    keras.utils.set_random_seed(args.seed)
    root = Path(args.data_dir) / "cats_and_dogs_small"

    def split(name: str, shuffle: bool) -> object:
        return keras.utils.image_dataset_from_directory(
            root / name, image_size=IMAGE_SIZE, batch_size=args.batch_size, shuffle=shuffle, seed=args.seed
        )

    train, validation, test = split("train", True), split("validation", False), split("test", False)
    model = small_cnn()
    model.compile(loss="binary_crossentropy", optimizer="rmsprop", metrics=["accuracy"])
    stamps = Stamps()
    model.fit(train, epochs=args.epochs, validation_data=validation, callbacks=[stamps], verbose=2)
    _, test_acc = model.evaluate(test, verbose=0)
    report(stamps, test_acc)


if __name__ == "__main__":
    main()
