"""nfcore.heap: freed C-heap memory is reused within a fit, and handed back after it."""

import resource
import sys

import pytest
import torch

from nfcore import heap

glibc_only = pytest.mark.skipif(heap._FUNCS is None or not sys.platform.startswith("linux"),
                                reason="mallopt is glibc's (Linux)")


def _faults_of_big_temporaries(n: int = 8) -> int:
    """Minor page faults while allocating, touching and freeing a 64 MB tensor `n` times."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        t = torch.ones(16 << 20)  # 64 MB, written (every page touched)
        del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@glibc_only
def test_big_temporaries_reuse_their_pages_inside_the_block_only():
    outside = _faults_of_big_temporaries()
    with heap.reuse_freed_memory():
        assert heap.active()
        _faults_of_big_temporaries(1)  # the first allocation faults its pages in once
        inside = _faults_of_big_temporaries()
    assert not heap.active()
    # 64 MB is 16,384 pages: outside, each allocation is a fresh mmap; inside, the heap keeps them.
    assert outside > 8 * 10_000, outside
    assert inside < outside / 4, (inside, outside)  # at most about one fault-in in all, not one per tensor
    assert _faults_of_big_temporaries() > 8 * 10_000  # the defaults are back after the block


def test_nested_blocks_keep_the_setting_until_the_outermost_ends():
    with heap.reuse_freed_memory():
        with heap.reuse_freed_memory():
            pass
        assert heap.active() == (heap._FUNCS is not None)
    assert not heap.active()


def test_the_block_is_left_on_errors_and_works_as_a_decorator():
    @heap.reuse_freed_memory()
    def fails():
        assert heap.active() == (heap._FUNCS is not None)
        raise ValueError("boom")

    with pytest.raises(ValueError):
        fails()
    with pytest.raises(ValueError):
        fails()  # a decorator's context is fresh on each call
    assert not heap.active()
