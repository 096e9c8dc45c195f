"""Data sets of labelled clips: FSDD file names or a folder per label, and their splits.

Two layouts are recognised:

- FSDD names, ``{label}_{speaker}_{take}.wav``, in the folder or in its ``recordings/``;
- a folder per label, ``root/<label>/*.wav`` (any label names, so users can train on their own
  words). A file named ``<speaker>_<rest>.wav`` there is credited to ``<speaker>``; without an
  underscore the speaker is ``unknown``.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inkvoice.core.errors import DataError, ParameterError, check_number

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
FSDD_NAME = re.compile(r"^(?P<label>[^_]+)_(?P<speaker>[^_]+)_(?P<take>\d+)$")
SPLITS = ("official", "speaker", "random")
OFFICIAL_TEST_TAKES = 5


@dataclass
class Dataset:
    """Clips with their labels, speakers and take numbers (-1 when unknown), in one order."""

    root: Path
    layout: str
    paths: list
    labels: np.ndarray
    speakers: np.ndarray
    takes: np.ndarray

    def __len__(self):
        return len(self.paths)

    def subset(self, indices):
        """The clips at ``indices`` as a new Dataset."""
        indices = np.asarray(indices, dtype=int)
        return Dataset(
            self.root,
            self.layout,
            [self.paths[i] for i in indices],
            self.labels[indices],
            self.speakers[indices],
            self.takes[indices],
        )

    def with_extra(self, extra, train_indices):
        """This data set followed by the clips of ``extra``, and ``train_indices`` followed by theirs.

        Splits are made on this data set alone, before extra clips are added, so extra
        clips only ever train and never count in held-out figures.
        """
        start = len(self)
        combined = Dataset(
            self.root,
            self.layout,
            self.paths + extra.paths,
            np.concatenate([self.labels, extra.labels]),
            np.concatenate([self.speakers, extra.speakers]),
            np.concatenate([self.takes, extra.takes]),
        )
        return combined, np.concatenate([np.asarray(train_indices, dtype=int), np.arange(start, len(combined))])


def is_audio(path):
    """Whether ``path`` has one of the audio suffixes we read (case-insensitive)."""
    return path.suffix.lower() in AUDIO_SUFFIXES


def parse_fsdd_name(path):
    """``(label, speaker, take)`` from an FSDD file name, or None if it does not follow it."""
    match = FSDD_NAME.match(Path(path).stem)
    if match is None:
        return None
    return match["label"], match["speaker"], int(match["take"])


def load_dataset(root):
    """Scan ``root`` for labelled clips in either layout.

    Raises
    ------
    DataError
        The folder is missing or holds no labelled clips in a known layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such data folder")
    label_folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    per_label = [(folder, sorted(f for f in folder.iterdir() if f.is_file() and is_audio(f))) for folder in label_folders]
    per_label = [(folder, files) for folder, files in per_label if files]
    if per_label and not (len(per_label) == 1 and per_label[0][0].name == "recordings"):
        rows = []
        for folder, files in per_label:
            for file in files:
                speaker = file.stem.split("_", 1)[0] if "_" in file.stem else "unknown"
                rows.append((file, folder.name, speaker, -1))
        return _dataset(root, "folders", rows)
    for folder in (root / "recordings", root):
        if folder.is_dir():
            rows = []
            for file in sorted(f for f in folder.iterdir() if f.is_file() and is_audio(f)):
                parsed = parse_fsdd_name(file)
                if parsed is not None:
                    rows.append((file, *parsed))
            if rows:
                return _dataset(root, "fsdd", rows)
    raise DataError(
        f"{root}: no labelled clips found; expected <label>_<speaker>_<take>.wav files "
        "(optionally in recordings/) or one folder per label holding .wav/.flac/.ogg files"
    )


def _dataset(root, layout, rows):
    paths, labels, speakers, takes = zip(*rows)
    return Dataset(
        root, layout, list(paths), np.array(labels), np.array(speakers), np.array(takes, dtype=int)
    )


def split_indices(dataset, method="official", *, test_speaker=None, test_fraction=0.2, seed=0):
    """Training and test indices of ``dataset`` for one split; they never overlap.

    Parameters
    ----------
    method : {"official", "speaker", "random"}
        ``official``: FSDD's split, takes 0-4 are the test set. ``speaker``: leave
        ``test_speaker`` out. ``random``: a stratified (per label) random split.
    test_speaker : str, for ``method="speaker"``
    test_fraction : float in (0, 1), for ``method="random"``
    seed : int, for ``method="random"``

    Returns
    -------
    train, test : np.ndarray of int
    """
    if method not in SPLITS:
        raise ParameterError(f"split must be one of {', '.join(SPLITS)}; got {method!r}")
    everything = np.arange(len(dataset))
    if method == "official":
        if np.any(dataset.takes < 0):
            raise ParameterError(
                "the official split needs FSDD file names with take numbers; use --split random or speaker"
            )
        test = dataset.takes < OFFICIAL_TEST_TAKES
    elif method == "speaker":
        known = sorted(set(dataset.speakers.tolist()))
        if test_speaker not in known:
            raise ParameterError(f"test speaker must be one of {', '.join(known)}; got {test_speaker!r}")
        test = dataset.speakers == test_speaker
    else:
        check_number("test_fraction", test_fraction, low=0, high=1, low_open=True, high_open=True)
        generator = np.random.default_rng(seed)
        test = np.zeros(len(dataset), dtype=bool)
        for label in np.unique(dataset.labels):
            members = np.flatnonzero(dataset.labels == label)
            n_test = int(round(test_fraction * members.size))
            if members.size >= 2:
                n_test = min(max(n_test, 1), members.size - 1)
            test[generator.permutation(members)[:n_test]] = True
    train, test = everything[~test], everything[test]
    if train.size == 0 or test.size == 0:
        raise DataError(f"the {method} split leaves an empty {'training' if train.size == 0 else 'test'} set")
    return train, test
