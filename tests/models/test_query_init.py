import torch

from rvos.models.modules.query_init import ObjectLinker, VideoQueryInitializer, link_objects, match_adjacent, reorder


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


def _objects_clip(places: list[dict[str, tuple[float, float]]], q: int = 4):
    """Frames of named objects at (x, y) -> (queries, positions, objects, where) of one clip: the objects take the
    frame's queries in reverse order of their names (so a query index says nothing of identity); every other query is
    background at (20, 20). Objects named alike ("a", "a2") have the same embedding."""
    t_len = len(places)
    basis = {"a": torch.eye(4)[0], "b": torch.eye(4)[1]}
    queries = torch.zeros(1, t_len, q, 4) + torch.eye(4)[3]
    positions = torch.full((1, t_len, q, 2), 20.0)
    objects = torch.zeros(1, t_len, q, dtype=torch.bool)
    where = []
    for t, frame in enumerate(places):
        where.append({})
        for k, (name, xy) in zip(range(q - 1, -1, -1), sorted(frame.items())):
            queries[0, t, k], positions[0, t, k], objects[0, t, k] = basis[name[0]], torch.tensor(xy), True
            where[t][name] = k
    return queries, positions, objects, where


def test_linking_objects_keeps_a_slot_for_an_object_while_it_is_away():
    """a is away in frames 1 and 2 and comes back; b stays; b2 (like b) appears in frame 3 next to where a was."""
    places = [{"a": (0, 0), "b": (6, 0)}, {"b": (6, 0)}, {"b": (6, 1)}, {"a": (0.2, 0), "b": (6, 1), "b2": (1, 1)}]
    queries, positions, objects, where = _objects_clip(places)
    perms = link_objects(queries, positions, objects)[0]
    slot = {name: perms[0].tolist().index(k) for name, k in where[0].items()}
    for t, frame in enumerate(where):
        for name, k in frame.items():
            if name in slot:
                assert perms[t, slot[name]] == k, (t, name)
        assert sorted(perms[t].tolist()) == list(range(4))  # every frame's queries, each in one slot
    assert not objects[0, 1, perms[1, slot["a"]]] and not objects[0, 2, perms[2, slot["a"]]]  # background meanwhile
    assert perms[3].tolist().index(where[3]["b2"]) not in slot.values()  # a new object starts a new slot


def test_linking_objects_expects_an_object_where_its_velocity_takes_it():
    """a moves right one unit a frame, is away for two frames, and comes back at x = 7; a look-alike appears at
    x = 4.5, nearer a's last place."""
    places = [{"a": (x, 0)} for x in range(5)] + [{}, {}, {"a": (7, 0), "a2": (4.5, 0)}]
    queries, positions, objects, where = _objects_clip(places)
    perms = link_objects(queries, positions, objects)[0]
    assert perms[7, perms[0].tolist().index(where[0]["a"])] == where[7]["a"]


def test_linking_objects_takes_back_an_object_that_turned_round_while_away():
    """a moves right one unit a frame to x = 4, is away for three frames (as beyond the picture's edge), and comes
    back where it left, moving left: its velocity puts it near x = 8, its last place beside where it is."""
    places = [{"a": (x, 0)} for x in range(5)] + [{}, {}, {}] + [{"a": (4 - x, 0)} for x in range(3)]
    queries, positions, objects, where = _objects_clip(places)
    perms = link_objects(queries, positions, objects)[0]
    slot = perms[0].tolist().index(where[0]["a"])
    assert [perms[t, slot].item() for t in range(8, 11)] == [where[t]["a"] for t in range(8, 11)]


def _swapped_places():
    """a and a2 (alike queries, red and blue) side by side, both hidden in frame 1, back in frame 2 each where the other
    was."""
    places = [{"a": (0, 0), "a2": (1, 0)}, {}, {"a": (1, 0), "a2": (0, 0)}]
    queries, positions, objects, where = _objects_clip(places)
    colours = torch.zeros(1, 3, 4, 3)
    masks = torch.zeros(1, 3, 4, 2, 4, dtype=torch.bool)
    for t, frame in enumerate(where):
        for name, k in frame.items():
            colours[0, t, k] = torch.tensor([1.0, 0, 0] if name == "a" else [0, 0, 1.0])
            masks[0, t, k, 0 if name == "a" else 1] = True
    return queries, positions, objects, where, colours, masks


def _follows(perms: torch.Tensor, where: list[dict[str, int]]) -> bool:
    slot = {name: perms[0].tolist().index(k) for name, k in where[0].items()}
    return all(perms[2, slot[name]] == k for name, k in where[2].items())


def test_linking_objects_tells_alike_queries_apart_by_colour():
    queries, positions, objects, where, colours, _ = _swapped_places()
    assert not _follows(link_objects(queries, positions, objects)[0], where)  # the places alone swap them
    assert _follows(link_objects(queries, positions, objects, colours=colours, colour_weight=2.0)[0], where)


def test_linking_objects_tells_alike_queries_apart_by_their_masks_overlap():
    queries, positions, objects, where, _, masks = _swapped_places()
    assert _follows(link_objects(queries, positions, objects, masks=masks, overlap_weight=2.0)[0], where)


def test_object_linker_over_windows_links_as_over_the_whole_clip():
    torch.manual_seed(0)
    b, t_len, q = 2, 9, 5
    queries, positions = torch.randn(b, t_len, q, 8), torch.rand(b, t_len, q, 2) * 4
    objects = torch.rand(b, t_len, q) > 0.4
    colours, masks = torch.rand(b, t_len, q, 3), torch.rand(b, t_len, q, 3, 4) > 0.5
    whole = link_objects(queries, positions, objects, 2.0, colours, 1.0, masks, 1.0)
    linker = ObjectLinker(2.0, 1.0, 1.0)
    windows = [linker.link(*(x[:, start:start + 4] for x in (queries, positions, objects, colours, masks)))
               for start in range(0, t_len, 4)]
    assert torch.equal(torch.cat(windows, 1), whole)
