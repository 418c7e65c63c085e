"""The epoch sampler and per-sample randomness: what each rank draws; a sample depends on its key only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dawn_lightning.data.datamodules import VideoClipDataModule
from dawn_lightning.data.sampling import EpochSampler, sample_rng, split_key
from dawn_lightning.tensors.draws import SampleDraws


def batches(sampler: EpochSampler, batch_size: int) -> list[list[tuple[int, int]]]:
    keys = list(sampler)
    return [keys[i : i + batch_size] for i in range(0, len(keys) - batch_size + 1, batch_size)]


@pytest.mark.parametrize("size", [24, 25])
def test_two_ranks_draw_the_batches_of_one_process_with_twice_the_batch(size):
    single = EpochSampler(size, shuffle=True, seed=3)
    ranks = [EpochSampler(size, shuffle=True, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for epoch in (0, 1):
        for sampler in (single, *ranks):
            sampler.set_epoch(epoch)
        per_rank = [batches(s, 3) for s in ranks]
        for step, big in enumerate(batches(single, 6)):
            assert sorted(per_rank[0][step] + per_rank[1][step]) == sorted(big)
        assert len(per_rank[0]) == len(per_rank[1]) == size // 6


def test_epochs_reshuffle_by_seed_and_a_pass_can_start_part_way():
    sampler = EpochSampler(10, shuffle=True, seed=0)
    first = list(sampler)
    assert sorted(i for _, i in first) == list(range(10)) and all(e == 0 for e, _ in first)
    assert list(EpochSampler(10, shuffle=True, seed=0)) == first
    assert [i for _, i in EpochSampler(10, shuffle=True, seed=1)] != [i for _, i in first]
    sampler.set_epoch(1)
    second = list(sampler)
    assert [i for _, i in second] != [i for _, i in first] and all(e == 1 for e, _ in second)
    sampler.start_at(4)
    assert list(sampler) == second[4:]  # the rest of the epoch
    assert list(sampler) == second  # once: the next pass is whole
    assert len(sampler) == 10


def test_a_huge_epoch_is_drawn_lazily():
    """VoxCeleb2 with stage 1's 32 samples per clip: 25.6 million keys, held as one int32 permutation."""
    import tracemalloc

    tracemalloc.start()
    keys = iter(EpochSampler(25_600_000, shuffle=True, seed=0, rank=1, world_size=8))
    first = [next(keys) for _ in range(3)]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 150 * 2**20, peak  # a list of the keys: ~2.9 GB
    assert all(e == 0 and 0 <= i < 25_600_000 for e, i in first)
    small = EpochSampler(100, shuffle=True, seed=4)
    assert [i for _, i in small] == np.random.default_rng([4, 0]).permutation(100).tolist()


def test_evaluation_gives_every_sample_once_in_order():
    shares = [list(EpochSampler(7, shuffle=False, rank=r, world_size=3)) for r in range(3)]
    assert sorted(i for share in shares for _, i in share) == list(range(7))
    assert [len(s) for s in shares] == [3, 2, 2]
    with pytest.raises(ValueError, match="rank 2 outside a world of 2"):
        EpochSampler(4, shuffle=False, rank=2, world_size=2)


def test_sample_randomness_depends_on_the_key_alone():
    assert split_key(5) == (0, 5) and split_key((2, 5)) == (2, 5)
    draw = sample_rng(0, (1, 5), train=True).random(4)
    np.testing.assert_array_equal(sample_rng(0, (1, 5), train=True).random(4), draw)
    assert not np.array_equal(sample_rng(0, (2, 5), train=True).random(4), draw)  # a new epoch, a new draw
    # evaluation samples are the same every epoch
    np.testing.assert_array_equal(
        sample_rng(0, (1, 5), train=False).random(4), sample_rng(0, (7, 5), train=False).random(4)
    )


def test_stage3_batches_are_the_same_with_two_ranks_or_workers(tiny_store):
    """Curriculum B (random length per batch, random reference): a 2-rank step draws the clips of the
    1-process step with twice the batch, loader workers or not."""

    def loader(world: int, rank: int, batch_size: int, workers: int = 0):
        dm = VideoClipDataModule(
            str(tiny_store), mode="random", num_frames=12, min_frames=6, batch_size=batch_size,
            samples_per_clip=8, num_workers=workers, check_store=False,
        )  # fmt: skip
        dm.trainer = None if world == 1 else type("T", (), {"world_size": world, "global_rank": rank})()
        return dm.train_dataloader()

    torch.manual_seed(0)
    single = next(iter(loader(1, 0, 4, workers=2)))
    torch.manual_seed(1)  # the global RNG plays no part
    halves = [next(iter(loader(2, r, 2))) for r in (0, 1)]
    for name in ("ref_index", "ref_pose"):
        merged = torch.stack([halves[0][name], halves[1][name]], dim=1).flatten(0, 1)
        torch.testing.assert_close(merged, single[name], rtol=0, atol=0)
    # each half is cropped to its own first sample's length; the single batch to the length of its first
    assert single["video"].shape[2] == halves[0]["video"].shape[2]
    torch.testing.assert_close(single["video"][0::2], halves[0]["video"], rtol=0, atol=0)


def test_sample_draws_of_a_split_batch_are_those_of_the_whole():
    seeds = torch.tensor([11, 12, 13, 14])
    whole = SampleDraws(seeds)
    halves = [SampleDraws(seeds[0::2]), SampleDraws(seeds[1::2])]
    draws = [(d.randint(1000), d.rand(3), d.randn(2, 5)) for d in (whole, *halves)]
    for i in range(3):
        merged = torch.stack([draws[1][i], draws[2][i]], dim=1).flatten(0, 1)
        torch.testing.assert_close(merged, draws[0][i], rtol=0, atol=0)
    assert not torch.equal(draws[0][2][0], draws[0][2][1])  # samples draw apart
    state = torch.get_rng_state()
    SampleDraws(seeds).randn(4)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
