import torch

from rvos.models.modules.query_init import VideoQueryInitializer, match_adjacent, reorder


def test_matching_undoes_a_permutation_of_each_frames_queries():
    torch.manual_seed(0)
    b, t_len, q, c = 2, 5, 6, 16
    base = torch.randn(b, 1, q, c)
    frames = base + 0.05 * torch.randn(b, t_len, q, c)  # the same instances, slightly changing over time
    perms = torch.stack([torch.stack([torch.randperm(q) for _ in range(t_len)]) for _ in range(b)])
    shuffled = reorder(frames, perms)  # frame t's slot k holds instance perms[t, k]
    restored = reorder(shuffled, match_adjacent(shuffled))
    # every frame is put back in frame 0's instance order: restored[t] = frames[t] in the order of perms[0]
    for i in range(b):
        for t in range(t_len):
            torch.testing.assert_close(restored[i, t], frames[i, t][perms[i, 0]], rtol=0, atol=0)
    assert not torch.equal(shuffled, reorder(frames, perms[:, :1].expand(-1, t_len, -1)))


def test_initializer_output_ignores_the_order_of_each_frames_queries():
    torch.manual_seed(1)
    init = VideoQueryInitializer(16)
    frames = torch.randn(1, 1, 6, 16) + 0.05 * torch.randn(1, 4, 6, 16)
    perms = torch.stack([torch.arange(6)] + [torch.randperm(6) for _ in range(3)])[None]
    shuffled = reorder(frames, perms)
    a = init(frames, match_adjacent(frames))
    b = init(shuffled, match_adjacent(shuffled))
    torch.testing.assert_close(a, b)
    # without re-ordering, the same shuffled input gives a different (wrong) aggregation
    unordered = init(shuffled, torch.arange(6).expand(1, 4, 6))
    assert not torch.allclose(unordered, a)
    # frame weights sum to one: equal queries in every frame come out unchanged
    same = torch.randn(1, 1, 6, 16).expand(1, 4, 6, 16)
    torch.testing.assert_close(init(same, match_adjacent(same)), same[:, 0])
