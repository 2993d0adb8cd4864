"""Datasets: loading, the SeqDataset type, the leave-one-out split."""

from rasr_lib.data.loaders import DATASETS, DataError, DatasetSpec, load_dataset, read_sequences, stats_table
from rasr_lib.data.schema import SeqDataset
from rasr_lib.data.split import SplitData, leave_one_out

__all__ = [
    "DATASETS",
    "DataError",
    "DatasetSpec",
    "SeqDataset",
    "SplitData",
    "leave_one_out",
    "load_dataset",
    "read_sequences",
    "stats_table",
]
