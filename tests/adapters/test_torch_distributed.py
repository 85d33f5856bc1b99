"""Two real torch.distributed ranks (gloo on 127.0.0.1), each with two DataLoader workers.

Every rank iterates its shard of each epoch and all-gathers the sample ids it saw: the ranks'
ids are disjoint (apart from the documented wrap-around padding), complete, and equally many.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from typing import Any

import pytest

pytest.importorskip("torch")

_RANK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import torch
    import torch.distributed as dist
    from batchup.adapters.torch import as_iterable_dataset
    from batchup.sources import ArrayDataSource

    rank, world, port, n = (int(a) for a in sys.argv[1:5])
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    ds = as_iterable_dataset(ArrayDataSource([np.arange(n)]), 4, shuffle=11)  # shard="auto"
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    result = {"len": len(ds), "epochs": []}
    for epoch in range(2):
        ds.set_epoch(epoch)
        mine = torch.cat([b[0] for b in loader]).tolist()
        gathered = [None] * world
        dist.all_gather_object(gathered, mine)
        result["epochs"].append(gathered)
    dist.barrier()
    dist.destroy_process_group()
    if rank == 0:
        print("RESULT " + json.dumps(result))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_ranks(n: int, world: int = 2, timeout: float = 120.0) -> dict:
    return _run_script(_RANK_SCRIPT, [n], world, timeout)


@pytest.mark.slow
def test_two_ranks_get_disjoint_complete_equal_shards():
    result = _run_ranks(n=64)
    orders = []
    for gathered in result["epochs"]:
        a, b = gathered
        assert len(a) == len(b) == 32 and result["len"] == 8
        assert not set(a) & set(b)
        assert sorted(a + b) == list(range(64))
        orders.append(a)
    assert orders[0] != orders[1]  # set_epoch reshuffled


@pytest.mark.slow
def test_uneven_sizes_are_padded_to_equal_counts():
    """65 samples over 2 ranks: 33 each, one wrap-around duplicate, nothing missing."""
    result = _run_ranks(n=65)
    for a, b in result["epochs"]:
        assert len(a) == len(b) == 33
        assert sorted(set(a) | set(b)) == list(range(65))
        assert len(set(a) & set(b)) == 1


_ELASTIC_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import torch.distributed as dist
    from batchup.adapters.torch import distributed_shard
    from batchup.sources import ArrayDataSource

    rank, world, port, n, path, steps = sys.argv[1:7]
    rank, world, port, n, steps = int(rank), int(world), int(port), int(n), int(steps)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    ds = ArrayDataSource([np.arange(n)])
    it = ds.batch_iterator(4, shuffle=11, shard=distributed_shard())
    if steps < 0:  # the resumed job: every rank loads the checkpoint one rank of the old job saved
        with open(path) as f:
            it.load_state_dict(json.load(f))
    mine, count = [], 0
    for (ids,) in it:
        mine.extend(ids[~it.last_padding].tolist())
        count += 1
        if count == steps:
            if rank == 0:
                with open(path, "w") as f:
                    json.dump(it.state_dict(), f)
            break
    gathered = [None] * world
    dist.all_gather_object(gathered, [mine, count])
    dist.barrier()
    dist.destroy_process_group()
    if rank == 0:
        print("RESULT " + json.dumps(gathered))
    """
)


def _run_script(script: str, args: list, world: int, timeout: float = 120.0) -> Any:
    """Start ``world`` rank processes of ``script`` on a free local port; return rank 0's RESULT line, parsed."""
    port = _free_port()
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(r), str(world), str(port), *map(str, args)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for r in range(world)
    ]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=timeout))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    line = next(x for x in outs[0][0].splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.mark.slow
def test_a_two_rank_checkpoint_resumes_on_three_ranks(tmp_path):
    """Elastic resume for real: 2 gloo ranks save mid-epoch, 3 ranks finish it; every id exactly once."""
    path = tmp_path / "state.json"
    n = 83
    before = _run_script(_ELASTIC_SCRIPT, [n, path, 3], world=2)
    after = _run_script(_ELASTIC_SCRIPT, [n, path, -1], world=3)
    assert len({count for _, count in after}) == 1  # equal batch counts on the new ranks
    ids = [i for mine, _ in before + after for i in mine]
    assert sorted(ids) == list(range(n))
