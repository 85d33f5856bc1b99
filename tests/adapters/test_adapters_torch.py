"""PyTorch adapter: DataLoader workers share an epoch without duplicates, tensors without copies."""
from __future__ import annotations

import numpy as np
import pytest

from batchup.demo import load_digits
from batchup.sources import ArrayDataSource, CallableDataSource

torch = pytest.importorskip("torch")
from batchup.adapters.torch import as_iterable_dataset, iter_tensors, to_tensors  # noqa: E402

DataLoader = torch.utils.data.DataLoader


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits()
    return X, y.astype(np.int64)


def _train(loader, epochs, ds):
    """A few SGD steps of a small nn.Module; returns the batches used and the losses."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    seen, losses = [], []
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        for x, y in loader:
            seen.append((x.clone(), y.clone()))
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return seen, losses


def test_training_loop_sees_the_same_batches_with_0_and_2_workers(digits):
    """Worker w takes batches w, w+2, ...; the DataLoader round-robin restores the serial order."""
    X, y = digits
    src = ArrayDataSource([X, y], indices=np.arange(600))
    runs = {}
    for workers in (0, 2):
        ds = as_iterable_dataset(src, 64, shuffle=3)
        loader = DataLoader(ds, batch_size=None, num_workers=workers)
        assert len(loader) == 10
        runs[workers] = _train(loader, 2, ds)
    (seen0, loss0), (seen2, loss2) = runs[0], runs[2]
    assert len(seen0) == len(seen2) == 20
    for (x0, y0), (x2, y2) in zip(seen0, seen2):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)
    assert loss0 == loss2
    assert loss0[-1] < loss0[0]
    # The serial reference: the source's own iterator for each epoch.
    ref = [b for e in range(2) for b in src.batch_iterator(64, shuffle=3, epoch=e)]
    assert all(np.array_equal(x.numpy(), rx) for (x, _), (rx, _) in zip(seen0, ref))


def test_every_epoch_is_complete_without_duplicates_and_reshuffled():
    src = ArrayDataSource([np.arange(50)])
    ds = as_iterable_dataset(src, 8, shuffle=1)
    loader = DataLoader(ds, batch_size=None, num_workers=2)
    epochs = []
    for e in range(2):
        ds.set_epoch(e)
        ids = torch.cat([b[0] for b in loader]).tolist()
        assert sorted(ids) == list(range(50))
        epochs.append(ids)
    assert epochs[0] != epochs[1]


def test_set_epoch_reaches_persistent_workers():
    ds = as_iterable_dataset([np.arange(20)], 5, shuffle=2)
    loader = DataLoader(ds, batch_size=None, num_workers=2, persistent_workers=True)
    first = [b[0].tolist() for b in loader]
    ds.set_epoch(1)
    second = [b[0].tolist() for b in loader]
    fresh = as_iterable_dataset([np.arange(20)], 5, shuffle=2, epoch=1)
    assert second == [b[0].tolist() for b in DataLoader(fresh, batch_size=None)] != first


def test_tensors_share_memory_with_the_numpy_batches():
    """With num_workers=0 the tensors are from_numpy views of the gathered batches: no copy."""
    made = []

    def keep(x):
        made.append(x)
        return (x,)

    ds = as_iterable_dataset(ArrayDataSource([np.arange(12.0)]).map(keep), 4)
    tensors = [b[0] for b in DataLoader(ds, batch_size=None, num_workers=0)]
    assert [t.data_ptr() for t in tensors] == [a.ctypes.data for a in made]


def test_to_tensors_keeps_structure_and_copies_only_read_only_arrays():
    ro = np.arange(3.0)
    ro.flags.writeable = False
    out = to_tensors({"a": ro, "b": (np.arange(2), np.array(["x", "y"]))})
    assert isinstance(out["a"], torch.Tensor) and out["a"].data_ptr() != ro.ctypes.data
    assert isinstance(out["b"], tuple) and out["b"][1].dtype.kind == "U"


def test_rank_shards_with_workers_are_disjoint_complete_and_equal():
    """Two ranks x two workers: each sample exactly once per epoch, same batch count per rank."""
    src = ArrayDataSource([np.arange(40)])
    per_rank = []
    for rank in range(2):
        ds = as_iterable_dataset(src, 6, shuffle=5, shard=(rank, 2))
        per_rank.append([b[0].tolist() for b in DataLoader(ds, batch_size=None, num_workers=2)])
        assert len(per_rank[-1]) == len(ds)
    assert len(per_rank[0]) == len(per_rank[1])
    ids = [sum(r, []) for r in per_rank]
    assert not set(ids[0]) & set(ids[1]) and sorted(ids[0] + ids[1]) == list(range(40))


def test_seeded_augmentation_does_not_depend_on_workers():
    def noisy(x, rng):
        return (x + rng.normal(size=x.shape),)

    src = ArrayDataSource([np.zeros((30, 2))]).map(noisy, seed=4)
    out = {}
    for workers in (0, 2):
        ds = as_iterable_dataset(src, 7, shuffle=0)
        out[workers] = torch.cat([b[0] for b in DataLoader(ds, batch_size=None, num_workers=workers)])
    assert torch.equal(out[0], out[2])


def test_non_random_access_source_is_split_between_workers():
    def batches(batch_size, **kwargs):
        for i in range(0, 20, batch_size):
            yield (np.arange(i, min(i + batch_size, 20)),)

    ds = as_iterable_dataset(CallableDataSource(batches, 20), 3)
    got = [b[0].tolist() for b in DataLoader(ds, batch_size=None, num_workers=2)]
    assert got == [b[0].tolist() for b in batches(3)]
    with pytest.raises(ValueError, match="rank sharding needs a random-access source"):
        as_iterable_dataset(CallableDataSource(batches, 20), 3, shard=(0, 2))


def test_structure_gives_dict_batches():
    ds = as_iterable_dataset([np.arange(4), np.arange(4) * 2], 2, structure={"image": 0, "label": 1})
    first = next(iter(DataLoader(ds, batch_size=None)))
    assert set(first) == {"image", "label"} and first["label"].tolist() == [0, 2]


def test_argument_errors():
    with pytest.raises(ValueError, match="shard must be 'auto'"):
        as_iterable_dataset([np.arange(4)], 2, shard="all")
    ds = as_iterable_dataset([np.arange(4)], 2)
    with pytest.raises(ValueError, match="epoch must be an int >= 0, got -1"):
        ds.set_epoch(-1)


def test_iter_tensors_keeps_length_and_resumes():
    """The plain iterator passes len() and state_dict() through, so a run can be resumed."""
    src = ArrayDataSource([np.arange(20.0)])
    it = iter_tensors(src.batch_iterator(3, shuffle=7))
    assert len(it) == 7
    next(it), next(it)
    state = it.state_dict()
    rest = [b[0].tolist() for b in it]
    again = iter_tensors(src.batch_iterator(3, shuffle=7))
    again.load_state_dict(state)
    assert [b[0].tolist() for b in again] == rest


def test_iter_tensors_pin_memory_without_accelerator_warns():
    if torch.cuda.is_available():  # pragma: no cover - CPU-only CI
        pytest.skip("an accelerator is present")
    with pytest.warns(UserWarning, match="no accelerator is available"):
        it = iter_tensors(ArrayDataSource([np.arange(4.0)]).batch_iterator(2), pin_memory=True, device="cpu")
    assert [b[0].tolist() for b in it] == [[0.0, 1.0], [2.0, 3.0]]


def test_iter_tensors_over_a_batchup_pool():
    """The DataLoader-free path: batchup's pool prefetches, iter_tensors converts."""
    from batchup import work_pool

    src = ArrayDataSource([np.arange(30.0)])
    serial = [b[0].tolist() for b in src.batch_iterator(4, shuffle=1)]
    with work_pool.WorkerThreadPool(processes=2) as pool:
        parallel = pool.parallel_data_source(src, batch_buffer_size=4)
        got = [b[0] for b in iter_tensors(parallel.batch_iterator(4, shuffle=1))]
    assert all(isinstance(t, torch.Tensor) for t in got) and [t.tolist() for t in got] == serial


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("stop", [1, 4, 9])
def test_stateful_dataloader_resumes_mid_epoch_without_replaying(num_workers, stop):
    """torchdata's StatefulDataLoader restores each copy's (epoch, position) instead of replaying batches."""
    sdl = pytest.importorskip("torchdata.stateful_dataloader")
    src = ArrayDataSource([np.arange(41), np.arange(41) * 2])
    fetched = []

    def spy(x, y):
        fetched.append(len(x))
        return x, y

    def make():
        return as_iterable_dataset(src.map(spy), 4, shuffle=6, shard=None, epoch=2)

    ref = [b[0].tolist() for b in DataLoader(make(), batch_size=None, num_workers=num_workers)]
    loader = sdl.StatefulDataLoader(make(), batch_size=None, num_workers=num_workers)
    it = iter(loader)
    head = [next(it)[0].tolist() for _ in range(stop)]
    state = loader.state_dict()
    del it
    fetched.clear()
    resumed = sdl.StatefulDataLoader(make(), batch_size=None, num_workers=num_workers)
    resumed.load_state_dict(state)
    tail = [b[0].tolist() for b in resumed]
    assert head + tail == ref
    if num_workers == 0:  # fetches happen in this process: nothing before the checkpoint is fetched again
        assert len(fetched) == len(tail)


def test_dataset_state_refuses_another_pipeline():
    ds = as_iterable_dataset(ArrayDataSource([np.arange(10)]), 4, shuffle=1, shard=None)
    state = ds.state_dict()
    with pytest.raises(ValueError, match="seed"):
        as_iterable_dataset(ArrayDataSource([np.arange(10)]), 4, shuffle=2, shard=None).load_state_dict(state)
    with pytest.raises(ValueError, match="position"):
        ds.load_state_dict(dict(state, position=-1))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_dataloader_that_batches_again_is_an_error(num_workers):
    ds = as_iterable_dataset(ArrayDataSource([np.arange(20), np.arange(20)]), 4, shard=None)
    with pytest.raises(TypeError, match="batch_size=None"):
        next(iter(DataLoader(ds, batch_size=8, num_workers=num_workers)))
    structured = as_iterable_dataset(ArrayDataSource([np.arange(20)]), 4, shard=None, structure={"x": 0})
    with pytest.raises(TypeError, match="batch_size=None"):
        next(iter(DataLoader(structured, batch_size=2)))
