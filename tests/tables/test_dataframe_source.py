"""DataFrameSource: declared x/y structures, pre-fitted encoders per batch and column."""
from __future__ import annotations

import pickle
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchup.tables import DataFrameSource, UnknownColumnError, n_classes_of, parse_structure
from tests.helpers import assert_batches_equal, assert_resumes, stream

pd = pytest.importorskip("pandas")
prep = pytest.importorskip("sklearn.preprocessing")


def batchflow_frame():
    return pd.DataFrame({
        "var1": ["Class 0", "Class 1", "Class 0", "Class 2", "Class 0", "Class 1", "Class 0", "Class 2"],
        "var2": ["Green", "Yellow", "Red", "Brown", "Green", "Yellow", "Red", "Brown"],
        "label": ["Leaf", "Flower", "Leaf", "Branch", "Green", "Yellow", "Red", "Brown"],
        "num": np.arange(8.0),
    })


class CountingEncoder:
    """Doubles its input and counts calls (to show encoding is per batch, not per row)."""

    def __init__(self) -> None:
        self.calls = 0

    def transform(self, x):  # noqa: ANN001
        self.calls += 1
        return np.asarray(x) * 2


class TestKerasBatchflowExample:
    def setup_method(self):
        df = batchflow_frame()
        self.df = df
        self.var1 = prep.LabelEncoder().fit(df["var1"])
        self.var2 = prep.LabelEncoder().fit(df["var2"])
        self.label = prep.LabelBinarizer().fit(df["label"])
        self.ds = DataFrameSource(
            df, x_structure=[("var1", self.var1), ("var2", self.var2)], y_structure=("label", self.label)
        )

    def test_shape_and_n_classes(self):
        """shape and n_classes mirror the declared structure (keras-batchflow's example)."""
        assert self.ds.shape == ([(None,), (None,)], (None, 7))
        assert self.ds.n_classes == ([3, 4], 7)

    def test_batches_are_the_encoded_rows(self):
        """Each batch is ([var1 codes, var2 codes], one-hot labels) of its rows."""
        ds_ix = DataFrameSource(
            self.df, x_structure=[("var1", self.var1), ("var2", self.var2)],
            y_structure=("label", self.label), include_indices=True,
        )
        for ix, (x1, x2), y in ds_ix.batch_iterator(4, shuffle=3):
            rows = self.df.iloc[ix]
            np.testing.assert_array_equal(x1, self.var1.transform(rows["var1"]))
            np.testing.assert_array_equal(x2, self.var2.transform(rows["var2"]))
            np.testing.assert_array_equal(y, self.label.transform(rows["label"]))

    def test_x_kept_as_list(self):
        """A list declaration yields a list, a tuple one a tuple, a leaf a bare array."""
        (x, y), = stream(self.ds.batch_iterator(8))
        assert isinstance(x, list) and len(x) == 2 and isinstance(y, np.ndarray)
        ds = DataFrameSource(self.df, x_structure=(("var1", self.var1), ("var2", self.var2)))
        (x,), = stream(ds.batch_iterator(8))
        assert isinstance(x, tuple)

    def test_resume(self):
        """The source resumes exactly (state_dict / load_state_dict)."""
        assert_resumes(lambda: self.ds.batch_iterator(3, shuffle=11))

    def test_pickles(self):
        """A source with sklearn encoders pickles (for process pools) and gives the same batches."""
        back = pickle.loads(pickle.dumps(self.ds))
        assert_batches_equal(stream(back.batch_iterator(3, shuffle=1)), stream(self.ds.batch_iterator(3, shuffle=1)))


class TestEncoders:
    def test_sklearn_2d_encoders_and_sparse(self):
        """OneHotEncoder (sparse), StandardScaler and multi-column leaves get 2-D input."""
        df = batchflow_frame()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ohe_df = prep.OneHotEncoder().fit(df[["var1", "var2"]])
            ohe_np = prep.OneHotEncoder(sparse_output=False).fit(df[["var1", "var2"]].to_numpy())
            sc = prep.StandardScaler().fit(df[["num"]])
            ds = DataFrameSource(df, x_structure=(
                (["var1", "var2"], ohe_df), (["var1", "var2"], ohe_np), ("num", sc), (["num", "var1"], None),
            ))
            (a, b, c, d), = ds.samples_by_indices(np.array([5, 1, 2]))
        assert ds.shape == ((None, 7), (None, 7), (None, 1), (None, 2))
        assert ds.n_classes == ((3, 4), (3, 4), None, None)
        np.testing.assert_array_equal(a, ohe_df.transform(df.iloc[[5, 1, 2]][["var1", "var2"]]).toarray())
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(c[:, 0], sc.transform(df[["num"]]).ravel()[[5, 1, 2]])
        assert d.tolist() == [[5.0, "Class 1"], [1.0, "Class 1"], [2.0, "Class 0"]]

    def test_one_call_per_batch_and_leaf(self):
        """Encoding is vectorised: one transform call per batch, never per row."""
        enc = CountingEncoder()
        ds = DataFrameSource({"a": np.arange(100)}, x_structure=("a", enc))
        batches = stream(ds.batch_iterator(25))
        assert enc.calls == 4
        assert np.concatenate([b[0] for b in batches]).tolist() == list(range(0, 200, 2))

    def test_dict_of_columns_without_pandas_types(self):
        """A dict of lists works like a DataFrame; bare names give raw values."""
        ds = DataFrameSource({"a": [1, 2, 3], "b": ["x", "y", "z"]}, x_structure=["a", ("a", None)], y_structure="b")
        [(x, y)] = stream(ds.batch_iterator(3))
        assert x[0].tolist() == [1, 2, 3] and x[1].tolist() == [1, 2, 3] and y.tolist() == ["x", "y", "z"]
        assert ds.columns == ("a", "b")

    def test_n_classes_rule(self):
        """n_classes reads n_classes, classes_ or categories_; None otherwise."""
        class Own:
            n_classes = 5

            def transform(self, x):  # noqa: ANN001
                return x

        assert n_classes_of(Own()) == 5
        assert n_classes_of(prep.StandardScaler()) is None


class TestErrors:
    def test_unknown_column(self):
        """An unknown column names itself, where it was declared and the columns present."""
        with pytest.raises(UnknownColumnError, match=r"y_structure: unknown column 'lable'.*'var1'"):
            DataFrameSource(batchflow_frame(), x_structure="var1", y_structure=("lable", None))
        with pytest.raises(KeyError):
            DataFrameSource(batchflow_frame(), x_structure=["nope"])
        with pytest.raises(ValueError, match="unknown column 'nope'"):
            DataFrameSource(batchflow_frame(), x_structure=[("num", None), ("nope", None)])

    def test_encoder_without_transform(self):
        """An encoder lacking transform is a TypeError naming the column."""
        with pytest.raises(TypeError, match=r"x_structure\[1\]: the encoder for column 'var2' has no transform"):
            DataFrameSource(batchflow_frame(), x_structure=["var1", ("var2", object())])

    def test_wrong_output_length(self):
        """An encoder returning another number of rows than the batch is a ValueError."""
        class Shrink:
            def transform(self, x):  # noqa: ANN001
                return np.asarray(x)[:1]

        ds = DataFrameSource(batchflow_frame(), x_structure=("num", Shrink()))
        with pytest.raises(ValueError, match=r"Shrink for column 'num' returned 1 rows for a batch of 4 rows"):
            stream(ds.batch_iterator(4))

    def test_bad_structures(self):
        """Empty groups, odd elements and bad tables are refused with the reason."""
        with pytest.raises(ValueError, match="empty list"):
            parse_structure([])
        with pytest.raises(TypeError, match="expected a column name"):
            parse_structure([3.5])
        with pytest.raises(TypeError, match="pandas DataFrame or a dict"):
            DataFrameSource([[1, 2]], x_structure="a")
        with pytest.raises(ValueError, match="same length"):
            DataFrameSource({"a": [1, 2], "b": [1]}, x_structure=["a", "b"])

    def test_encoder_error_notes_the_column(self):
        """An encoder's own error keeps its type and notes the column."""
        le = prep.LabelEncoder().fit(["a", "b"])
        ds = DataFrameSource({"c": ["a", "zzz"]}, x_structure=("c", le))
        with pytest.raises(ValueError) as info:
            stream(ds.batch_iterator(2))
        if sys.version_info >= (3, 11):
            assert any("column 'c'" in n for n in info.value.__notes__)

    def test_missing_pandas_names_the_extra(self, monkeypatch):
        """An encoder fitted on a DataFrame needs pandas; without it the error names the extra."""
        class FittedOnFrame:
            feature_names_in_ = np.array(["a"])

            def transform(self, x):  # noqa: ANN001
                return np.asarray(x)

        ds = DataFrameSource({"a": [1, 2]}, x_structure=("a", FittedOnFrame()))
        monkeypatch.setitem(sys.modules, "pandas", None)
        with pytest.raises(ImportError, match=r"pip install batchup\[pandas\]"):
            stream(ds.batch_iterator(2))


@given(
    n=st.integers(1, 40),
    bs=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_epoch_is_the_encoded_permutation(n, bs, seed):
    """Property: a shuffled epoch is every row once, each encoded like a whole-column transform."""
    cats = np.array(["a", "b", "c", "d"])[np.arange(n) % 4]
    le = prep.LabelEncoder().fit(cats)
    ds = DataFrameSource(
        {"cat": cats, "v": np.arange(n)}, x_structure=[("cat", le)], y_structure="v", include_indices=True
    )
    seen = []
    for ix, (codes,), v in ds.batch_iterator(bs, shuffle=seed):
        assert 1 <= len(ix) <= bs
        np.testing.assert_array_equal(v, ix)
        np.testing.assert_array_equal(codes, le.transform(cats[ix]))
        seen.extend(ix.tolist())
    assert sorted(seen) == list(range(n))
