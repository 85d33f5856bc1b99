"""Same seed, same stream: across fresh interpreters and hash seeds (reliability D3)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
import json, numpy as np
from batchup.sources import ArrayDataSource, CompositeDataSource
from batchup.samplers import WeightedSampler
X = np.arange(97)
a = [b[0].tolist() for b in ArrayDataSource([X], repeats=2).batch_iterator(10, shuffle=2024)]
w = ArrayDataSource([X], sampler=WeightedSampler(np.arange(97) % 5)).batch_iterator(7, shuffle=3)
c = CompositeDataSource([ArrayDataSource([X]), ArrayDataSource([X[:20]], repeats=-1)]).batch_iterator(8, shuffle=5)
m = ArrayDataSource([X.astype(float)]).map(lambda x, rng: (x + rng.random(len(x)),), seed=9).batch_iterator(16)
print(json.dumps([a, [next(w)[0].tolist() for _ in range(4)], [[p.tolist() for p in b] for b in c],
                  [b[0].round(12).tolist() for b in m]]))
"""


def run(hash_seed: str) -> list:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_same_seed_same_stream_in_fresh_interpreters():
    assert run("1") == run("12345")


def test_different_seeds_differ():
    import numpy as np

    from batchup.sources import ArrayDataSource

    ds = ArrayDataSource([np.arange(50)])
    a = [b[0].tolist() for b in ds.batch_iterator(10, shuffle=1)]
    b = [b[0].tolist() for b in ds.batch_iterator(10, shuffle=2)]
    assert a != b
