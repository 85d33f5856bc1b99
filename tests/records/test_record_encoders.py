"""The two encoder protocols of numblr's datagenerator, the target encoders and InventorySource."""
from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

from batchup.records import (
    BatchDataEncoder,
    BinaryTargetEncoder,
    DataEncoder,
    InventorySource,
    LabelTargetEncoder,
    OneHotTargetEncoder,
    Record,
    encode_records,
)
from tests.helpers import assert_batches_equal, assert_resumes, stream

pd = pytest.importorskip("pandas")

INVENTORY = {"text": ["a", "bb", "ccc", "dddd", "eeeee"], "label": ["x", "y", "x", "z", "y"]}


class Length(DataEncoder):
    def transform(self, record):  # noqa: ANN001
        return np.array([len(record["text"]), 1])


class Fitted(DataEncoder):
    """Learns the longest text in fit, pads to it; counts fit calls."""

    fits = 0

    def fit(self, inventory):  # noqa: ANN001
        type(self).fits += 1
        texts = inventory["text"] if not isinstance(inventory, list) else [r["text"] for r in inventory]
        self.width = max(len(t) for t in texts)
        return self

    def transform(self, record):  # noqa: ANN001
        return [ord(c) for c in record["text"].ljust(self.width)]


class TestProtocols:
    def test_per_record_callable(self):
        """A plain callable is a per-record encoder; results are stacked."""
        out = encode_records(lambda r: len(r["text"]), [{"text": "ab"}, {"text": "c"}])
        assert out.tolist() == [2, 1]

    def test_per_record_with_finalize(self):
        """finalize_batch receives the per-record results and returns the batch."""
        class Padded:
            def transform(self, record):  # noqa: ANN001
                return list(range(len(record["text"])))

            def finalize_batch(self, items):  # noqa: ANN001
                width = max(len(i) for i in items)
                return np.array([i + [-1] * (width - len(i)) for i in items])

        out = encode_records(Padded(), [{"text": "abc"}, {"text": "a"}])
        assert out.tolist() == [[0, 1, 2], [0, -1, -1]]

    def test_per_batch(self):
        """transform_batch gets the whole list of records; it wins over transform."""
        class Both(BatchDataEncoder):
            def transform(self, record):  # noqa: ANN001
                raise AssertionError("per-record path used")

            def transform_batch(self, records):  # noqa: ANN001
                return np.array([len(r["text"]) for r in records])

        assert encode_records(Both(), [{"text": "ab"}]).tolist() == [2]

    def test_tuple_of_outputs(self):
        """A per-batch encoder may return a tuple of arrays (several inputs)."""
        class Two(BatchDataEncoder):
            def transform_batch(self, records):  # noqa: ANN001
                return np.zeros(len(records)), np.ones((len(records), 2))

        a, b = encode_records(Two(), [{}, {}, {}])
        assert a.shape == (3,) and b.shape == (3, 2)

    def test_wrong_length_is_an_error(self):
        """A result with another row count than the records is a ValueError."""
        class Short(BatchDataEncoder):
            def transform_batch(self, records):  # noqa: ANN001
                return np.zeros(len(records) - 1)

        with pytest.raises(ValueError, match="returned 2 rows for a batch of 3 records"):
            encode_records(Short(), [{}, {}, {}])

    def test_not_an_encoder(self):
        """Objects following neither protocol are refused at construction."""
        with pytest.raises(TypeError, match="data_encoder must have transform_batch"):
            InventorySource(INVENTORY, object())

    def test_base_classes_say_what_to_write(self):
        """The optional base classes raise NotImplementedError naming the method."""
        with pytest.raises(NotImplementedError, match=r"transform\(record\)"):
            DataEncoder()({"a": 1})
        with pytest.raises(NotImplementedError, match=r"transform_batch\(records\)"):
            BatchDataEncoder().transform_batch([])


class TestRecord:
    def test_missing_field(self):
        """A missing field names the row and the fields present."""
        ds = InventorySource(INVENTORY, lambda r: r["size"])
        with pytest.raises(KeyError, match=r"row 0 has no field 'size'; its fields are \['text', 'label'\]"):
            stream(ds.batch_iterator(2))

    def test_user_error_notes_the_row(self):
        """An error in a per-record encoder is noted with the record's row."""
        def fail_on_c(record):  # noqa: ANN001
            if record["text"] == "ccc":
                raise RuntimeError("bad text")
            return 0

        ds = InventorySource(INVENTORY, fail_on_c)
        with pytest.raises(RuntimeError, match="bad text") as info:
            stream(ds.batch_iterator(5))
        if sys.version_info >= (3, 11):
            assert any("row 2" in n for n in info.value.__notes__)

    def test_pickles_with_row(self):
        """Records keep their row through pickling (process pools)."""
        r = pickle.loads(pickle.dumps(Record({"a": 1}, index=9)))
        assert r == {"a": 1} and r.index == 9


class TestTargets:
    def test_label_onehot_binary(self):
        """Classes are the sorted distinct labels; codes, one-hot rows and 0/1 follow."""
        records = [Record({"label": v}, index=i) for i, v in enumerate(["y", "x", "z"])]
        lab = LabelTargetEncoder().fit(INVENTORY)
        assert lab.classes_.tolist() == ["x", "y", "z"] and lab.n_classes == 3
        assert lab.transform_batch(records).tolist() == [1, 0, 2]
        one = OneHotTargetEncoder().fit(pd.DataFrame(INVENTORY))
        assert one.transform_batch(records).tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 1]]
        assert one.transform_batch(records).dtype == np.float32
        binary = BinaryTargetEncoder(classes=["no", "yes"])
        assert binary.transform_batch([{"label": "yes"}, {"label": "no"}]).tolist() == [1.0, 0.0]

    def test_given_classes_are_kept(self):
        """Explicit classes are not relearned by fit."""
        enc = LabelTargetEncoder(classes=["z", "x", "y", "w"]).fit(INVENTORY)
        assert enc.classes_.tolist() == ["w", "x", "y", "z"]

    def test_errors(self):
        """Unknown or missing labels, no fit, and non-binary classes are clear errors."""
        enc = LabelTargetEncoder().fit(INVENTORY)
        with pytest.raises(ValueError, match=r"row 4 has the label 'q', which is not one of the 3 known"):
            enc.transform_batch([Record({"label": "q"}, index=4)])
        with pytest.raises(ValueError, match=r"row 1 has a missing value in field 'label'"):
            enc.transform_batch([Record({"label": float("nan")}, index=1)])
        with pytest.raises(ValueError, match="call fit"):
            LabelTargetEncoder().transform_batch([{"label": "x"}])
        with pytest.raises(ValueError, match="exactly 2 classes"):
            BinaryTargetEncoder().fit(INVENTORY)
        with pytest.raises(KeyError, match="no column 'kind'"):
            LabelTargetEncoder("kind").fit(INVENTORY)
        with pytest.raises(ValueError, match="missing values"):
            LabelTargetEncoder().fit({"label": ["a", None]})


class TestInventorySource:
    @pytest.mark.parametrize("kind", ["frame", "dict", "records"])
    def test_inventory_kinds(self, kind):
        """DataFrame, dict of columns and list of dicts give the same batches."""
        inv = {
            "frame": pd.DataFrame(INVENTORY),
            "dict": INVENTORY,
            "records": [dict(zip(INVENTORY, v)) for v in zip(*INVENTORY.values())],
        }[kind]
        ds = InventorySource(inv, Length(), LabelTargetEncoder())
        (x, y), (x2, y2) = stream(ds.batch_iterator(3))
        assert x[:, 0].tolist() == [1, 2, 3] and y.tolist() == [0, 1, 0]
        assert x2[:, 0].tolist() == [4, 5] and y2.tolist() == [2, 1]

    def test_fit_once_and_used(self):
        """fit(inventory) runs once, at construction; transform uses what it learnt."""
        Fitted.fits = 0
        ds = InventorySource(INVENTORY, Fitted())
        stream(ds.batch_iterator(2))
        stream(ds.batch_iterator(2))
        assert Fitted.fits == 1
        (x,), = stream(ds.batch_iterator(5, shuffle=1), 1)
        assert x.shape == (5, 5)

    def test_shuffle_resume_subset(self):
        """Samplers, seeds, subsets and resume work as for arrays."""
        ds = InventorySource(INVENTORY, Length(), OneHotTargetEncoder(), include_indices=True)
        for ix, x, _y in ds.batch_iterator(2, shuffle=4):
            assert x[:, 0].tolist() == [len(INVENTORY["text"][i]) for i in ix]
        assert_resumes(lambda: ds.batch_iterator(2, shuffle=4))
        sub = InventorySource(INVENTORY, Length(), indices=[4, 1])
        assert [b[0][:, 0].tolist() for b in sub.batch_iterator(5)] == [[5, 2]]
        a = stream(ds.batch_iterator(2, shuffle=9))
        assert_batches_equal(a, stream(ds.batch_iterator(2, shuffle=9)))

    def test_bad_inventory(self):
        """Unsupported inventories and ragged dicts are refused."""
        with pytest.raises(TypeError, match="inventory must be"):
            InventorySource("inventory.csv", Length())
        with pytest.raises(ValueError, match="same length"):
            InventorySource({"a": [1], "b": [1, 2]}, Length())
