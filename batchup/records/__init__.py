"""Record inventories: batches made by encoders from the rows of an inventory.

An inventory (a DataFrame, dict of columns or list of dicts) lists the
samples; per-record or per-batch encoders load and encode each batch's
records (:mod:`.encoders`), from files (:class:`FileDataEncoder`) or URLs
(:class:`UrlDataEncoder`), with label, one-hot or binary targets
(:mod:`.targets`). :func:`files_source` and :func:`urls_source` build the
whole source from an inventory CSV.
"""
from __future__ import annotations

from batchup.records.encoders import (
    BatchDataEncoder,
    BatchEncoderProtocol,
    DataEncoder,
    Record,
    RecordEncoderProtocol,
    encode_records,
)
from batchup.records.factories import files_source, read_inventory, urls_source
from batchup.records.files import FileDataEncoder
from batchup.records.inventory import InventorySource
from batchup.records.targets import BinaryTargetEncoder, LabelTargetEncoder, OneHotTargetEncoder
from batchup.records.urls import UrlDataEncoder, UrlFetchError, fetch_url

__all__ = [
    "BatchDataEncoder",
    "BatchEncoderProtocol",
    "BinaryTargetEncoder",
    "DataEncoder",
    "FileDataEncoder",
    "InventorySource",
    "LabelTargetEncoder",
    "OneHotTargetEncoder",
    "Record",
    "RecordEncoderProtocol",
    "UrlDataEncoder",
    "UrlFetchError",
    "encode_records",
    "fetch_url",
    "files_source",
    "read_inventory",
    "urls_source",
]
