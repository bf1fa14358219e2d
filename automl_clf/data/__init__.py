"""The data room: discovery, splitting, decoding, preprocessing, augmentation and batches."""

from automl_clf.data.dataset import Dataset, SplitArrays, load_dataset
from automl_clf.data.preprocess import Decoding, Preprocessing, build_preprocessing

__all__ = [
    "Dataset",
    "Decoding",
    "Preprocessing",
    "SplitArrays",
    "build_preprocessing",
    "load_dataset",
]
