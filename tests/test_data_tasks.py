"""Tests of metaprune.data.tasks: pools, sampling, shared-class designs, serialisation."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metaprune.data.loaders import default_cifar100_path
from metaprune.data.tasks import Task, TaskSampler, shared_classes

N_CLASSES, PER_CLASS, N_TEST = 20, 30, 10


@pytest.fixture(scope="module")
def labels():
    """20 classes x 30 images, shuffled, with global ids 100..119 (not 0..n-1)."""
    return np.random.default_rng(42).permutation(np.repeat(np.arange(100, 100 + N_CLASSES), PER_CLASS))


@pytest.fixture
def sampler(labels):
    return TaskSampler(labels, n_test_per_class=N_TEST, random_state=0)


def _check_task(task, sampler, n_train_per_class):
    labels = sampler.labels
    assert task.classes == tuple(sorted(task.classes)) and len(set(task.classes)) == task.n_way
    assert task.train_index.dtype == np.int64 and task.test_index.dtype == np.int64
    assert np.intersect1d(task.train_index, task.test_index).size == 0
    assert set(labels[task.train_index]) == set(task.classes) == set(labels[task.test_index])
    for c in task.classes:  # exact per-class counts, from the right pools
        train_c = task.train_index[labels[task.train_index] == c]
        test_c = task.test_index[labels[task.test_index] == c]
        assert len(train_c) == n_train_per_class and len(test_c) == N_TEST
        assert np.isin(train_c, sampler.train_pools[c]).all()
        np.testing.assert_array_equal(np.sort(test_c), sampler.test_pools[c])


# --------------------------------------------------------------------------- pools


def test_pools_partition_every_class(sampler, labels):
    assert sampler.classes == tuple(range(100, 100 + N_CLASSES))
    all_test = np.concatenate(list(sampler.test_pools.values()))
    all_train = np.concatenate(list(sampler.train_pools.values()))
    assert np.intersect1d(all_test, all_train).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([all_test, all_train])), np.arange(len(labels)))
    for c in sampler.classes:
        assert len(sampler.test_pools[c]) == N_TEST and len(sampler.train_pools[c]) == PER_CLASS - N_TEST
        assert (labels[sampler.train_pools[c]] == c).all() and (labels[sampler.test_pools[c]] == c).all()
        assert not sampler.train_pools[c].flags.writeable
    with pytest.raises(TypeError):
        sampler.train_pools[100] = np.arange(3)


def test_no_test_image_is_ever_trained_on(sampler):
    tasks = (sampler.sample(30, n_way=5) + sampler.sample(10, n_way=3, n_train_per_class=4)
             + sampler.sharing(sampler.sample(1)[0], 2, 10))
    trained = np.unique(np.concatenate([t.train_index for t in tasks]))
    tested = np.unique(np.concatenate([t.test_index for t in tasks]))
    assert np.intersect1d(trained, tested).size == 0


@pytest.mark.parametrize("n_test", [PER_CLASS, PER_CLASS + 1])
def test_pool_must_leave_training_images(labels, n_test):
    with pytest.raises(ValueError, match=f"n_test_per_class={n_test} leaves no training image"):
        TaskSampler(labels, n_test_per_class=n_test)


def test_uneven_classes_name_the_short_one():
    labels = np.array([0] * 5 + [1] * 2 + [2] * 5)
    with pytest.raises(ValueError, match=r"class\(es\) \{1: 2\}"):
        TaskSampler(labels, n_test_per_class=2)
    assert len(TaskSampler(labels, n_test_per_class=0).sample(1, n_way=3)[0].test_index) == 0


@pytest.mark.parametrize("labels, message", [
    (np.array([0.0, 1.0]), "integer class ids"),
    (np.zeros((2, 2), int), "1-D"),
    (np.array([], int), "non-empty"),
])
def test_sampler_validates_labels(labels, message):
    with pytest.raises(ValueError, match=message):
        TaskSampler(labels, n_test_per_class=0)


def test_sampler_validates_arguments(sampler):
    with pytest.raises(ValueError, match="n_test_per_class must be an int >= 0"):
        TaskSampler(sampler.labels, n_test_per_class=-1)
    with pytest.raises(ValueError, match="random_state"):
        TaskSampler(sampler.labels, n_test_per_class=1, random_state="seed")
    with pytest.raises(ValueError, match="n_way=21 exceeds the 20 classes"):
        sampler.sample(1, n_way=21)
    for n_way in (0, 1):  # a classification task has at least 2 classes
        with pytest.raises(ValueError, match="n_way must be an int >= 2"):
            sampler.sample(1, n_way=n_way)
    with pytest.raises(ValueError, match="n_train_per_class=21 exceeds the training pool"):
        sampler.sample(1, n_train_per_class=21)
    with pytest.raises(ValueError, match=r"classes \[7\] do not occur"):
        sampler.sample(1, classes=[100, 7])
    with pytest.raises(ValueError, match="n_way=5 exceeds the 3 classes"):
        sampler.sample(1, classes=[100, 101, 102])
    with pytest.raises(ValueError, match="prefix"):
        sampler.sample(1, prefix="")
    assert sampler.sample(0) == []


# --------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("n_train", [None, 20, 5, 1])
def test_sample_counts_and_global_labels(sampler, n_train):
    tasks = sampler.sample(12, n_way=5, n_train_per_class=n_train)
    assert len(tasks) == 12
    for task in tasks:
        assert task.n_way == 5
        _check_task(task, sampler, PER_CLASS - N_TEST if n_train is None else n_train)


def test_limited_data_subsets_differ_between_tasks(sampler):
    a, b = sampler.sample(2, n_way=20, n_train_per_class=5)
    assert a.classes == b.classes
    assert not np.array_equal(a.train_index, b.train_index)
    np.testing.assert_array_equal(a.test_index, b.test_index)


def test_sample_restricted_classes(sampler):
    allowed = (101, 105, 110, 111, 119, 103)
    for task in sampler.sample(10, n_way=4, classes=allowed):
        assert set(task.classes) <= set(allowed)


def test_task_ids_are_unique_across_calls(sampler):
    ids = [t.task_id for t in sampler.sample(3) + sampler.sample(2) + sampler.sample(2, prefix="new")]
    assert ids == ["task-0000", "task-0001", "task-0002", "task-0003", "task-0004", "new-0000", "new-0001"]


def _signature(tasks):
    return [(t.classes, t.train_index.tolist(), t.test_index.tolist()) for t in tasks]


def test_same_seed_same_tasks_other_seed_other_tasks(labels):
    def draw(seed):
        sampler = TaskSampler(labels, n_test_per_class=N_TEST, random_state=seed)
        tasks = sampler.sample(5, n_train_per_class=7)
        target = tasks[0]
        return sampler, tasks + sampler.sharing(target, 2, 3), sampler.disjoint_split(5)

    s1, tasks1, split1 = draw(3)
    s2, tasks2, split2 = draw(3)
    s3, tasks3, split3 = draw(4)
    assert tasks1 == tasks2 and split1 == split2
    assert all(np.array_equal(s1.test_pools[c], s2.test_pools[c]) for c in s1.classes)
    assert _signature(tasks1) != _signature(tasks3)
    assert any(not np.array_equal(s1.test_pools[c], s3.test_pools[c]) for c in s1.classes)


def test_per_call_random_state(sampler, labels):
    a = sampler.sample(4, n_train_per_class=3, random_state=11)
    b = sampler.sample(4, n_train_per_class=3, random_state=11)
    c = sampler.sample(4, n_train_per_class=3, random_state=12)
    assert _signature(a) == _signature(b) != _signature(c)
    gen = sampler.sample(4, n_train_per_class=3, random_state=np.random.default_rng(11))
    assert _signature(gen) == _signature(a)
    rs1 = TaskSampler(labels, n_test_per_class=N_TEST, random_state=np.random.RandomState(5)).sample(3)
    rs2 = TaskSampler(labels, n_test_per_class=N_TEST, random_state=np.random.RandomState(5)).sample(3)
    assert rs1 == rs2


# --------------------------------------------------------------------------- shared-class designs


@pytest.mark.parametrize("n_shared", range(6))
def test_sharing_exact_counts(sampler, n_shared):
    target = sampler.sample(1, n_way=5, prefix="target")[0]
    tasks = sampler.sharing(target, n_shared, n_tasks=15)
    assert len(tasks) == 15
    for task in tasks:
        assert task.n_way == 5 and shared_classes(target, task) == n_shared
        _check_task(task, sampler, PER_CLASS - N_TEST)
    if n_shared < 5:  # the shared classes vary, the others come from outside the target
        assert len({t.classes for t in tasks}) > 1
    else:
        assert all(t.classes == target.classes for t in tasks)


def test_sharing_other_sizes_and_restrictions(sampler):
    target = sampler.sample(1, n_way=5)[0]
    outside = [c for c in sampler.classes if c not in target.classes][:4]
    for task in sampler.sharing(target, 1, 10, n_way=3, classes=outside, n_train_per_class=2):
        assert task.n_way == 3 and shared_classes(target, task) == 1
        assert set(task.classes) - set(target.classes) <= set(outside)
        _check_task(task, sampler, 2)
    with pytest.raises(ValueError, match="n_shared=6 exceeds"):
        sampler.sharing(target, 6, 1)
    with pytest.raises(ValueError, match="n_shared=4 exceeds n_way=3"):
        sampler.sharing(target, 4, 1, n_way=3)
    with pytest.raises(ValueError, match="4 classes are needed outside the target's classes, but only 2"):
        sampler.sharing(target, 1, 1, classes=outside[:2])
    with pytest.raises(ValueError, match="target must be a Task"):
        sampler.sharing(target.classes, 1, 1)


def test_disjoint_split_group_iii(sampler):
    train_classes, test_classes = sampler.disjoint_split(8, random_state=1)
    assert len(train_classes) == 12 and len(test_classes) == 8
    assert not set(train_classes) & set(test_classes)
    assert set(train_classes) | set(test_classes) == set(sampler.classes)
    assert list(train_classes) == sorted(train_classes) and list(test_classes) == sorted(test_classes)
    bank = sampler.sample(20, classes=train_classes, prefix="bank")
    new = sampler.sample(10, classes=test_classes, prefix="new")
    assert max(shared_classes(a, b) for a in bank for b in new) == 0
    assert sampler.disjoint_split(8, random_state=1) == (train_classes, test_classes)
    for bad in (0, 20):
        with pytest.raises(ValueError, match="n_test_classes"):
            sampler.disjoint_split(bad)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_way=st.integers(2, 10), data=st.data())
def test_property_sharing_is_exact(labels, seed, n_way, data):
    n_shared = data.draw(st.integers(0, n_way))
    sampler = TaskSampler(labels, n_test_per_class=N_TEST, random_state=seed)
    target = sampler.sample(1, n_way=n_way)[0]
    for task in sampler.sharing(target, n_shared, 3):
        assert shared_classes(target, task) == n_shared and task.n_way == n_way


# --------------------------------------------------------------------------- Task


def test_task_roundtrip_through_json(sampler):
    task = sampler.sample(1, n_train_per_class=3)[0]
    data = json.loads(json.dumps(task.to_dict()))
    assert data["classes"] == list(task.classes)
    again = Task.from_dict(data)
    assert again == task and hash(again) == hash(task)
    assert again.train_index.dtype == np.int64
    with pytest.raises(ValueError, match=r"misses the keys \['test_index'\]"):
        Task.from_dict({k: v for k, v in data.items() if k != "test_index"})


def test_task_validation_and_immutability():
    task = Task("t", (5, 2), [4, 1], [0, 3])
    assert task.classes == (2, 5) and "n_train=2" in repr(task)
    assert not task.train_index.flags.writeable
    with pytest.raises(AttributeError):
        task.classes = (1,)
    with pytest.raises(ValueError, match=r"positions \[3\] are in both"):
        Task("t", (1,), [3, 4], [3])
    with pytest.raises(ValueError, match="repeated"):
        Task("t", (1,), [3, 3], [])
    with pytest.raises(ValueError, match="distinct"):
        Task("t", (1, 1), [3], [])
    with pytest.raises(ValueError, match="int class ids"):
        Task("t", (1.5,), [3], [])
    with pytest.raises(ValueError, match="non-negative"):
        Task("t", (1,), [-1], [])
    with pytest.raises(ValueError, match="task_id"):
        Task("", (1,), [0], [])
    assert Task("t", (1,), [0], []) != Task("u", (1,), [0], [])


def test_task_split(sampler, labels):
    images = np.arange(len(labels) * 2).reshape(len(labels), 2)
    task = sampler.sample(1, n_way=3, n_train_per_class=4)[0]
    X_train, y_train, X_test, y_test = task.split(images, labels)
    assert X_train.shape == (12, 2) and X_test.shape == (30, 2)
    np.testing.assert_array_equal(X_train[:, 0] // 2, task.train_index)
    np.testing.assert_array_equal(y_train, labels[task.train_index])
    np.testing.assert_array_equal(y_test, labels[task.test_index])
    assert set(y_train) == set(task.classes)  # global ids, not 0..n_way-1
    with pytest.raises(ValueError, match="outside its classes"):
        task.split(images, np.roll(labels, 1))
    with pytest.raises(ValueError, match="must match in length"):
        task.split(images[:-1], labels)
    with pytest.raises(ValueError, match="out of range"):
        Task("t", task.classes, [10**6], []).split(images, labels)


def test_shared_classes_helper():
    a = Task("a", (1, 2, 3), [0], [1])
    assert shared_classes(a, Task("b", (3, 4, 1), [2], [])) == 2
    assert shared_classes(a, [7, 8]) == 0 and shared_classes([1, 2], (2, 3)) == 1


# --------------------------------------------------------------------------- real labels


def test_real_cifar100_400_100_split():
    path = default_cifar100_path()
    if path is None or path.suffix != ".npz":
        pytest.skip("the shared CIFAR-100 copy ../shared/data/cifar100/train.npz is absent")
    with np.load(path, allow_pickle=False) as npz:
        labels = npz["y"]  # only the labels are decompressed
    sampler = TaskSampler(labels, n_test_per_class=100, random_state=0)
    assert len(sampler.classes) == 100
    assert {len(p) for p in sampler.train_pools.values()} == {400}
    task = sampler.sample(1, n_way=5)[0]
    assert len(task.train_index) == 2000 and len(task.test_index) == 500
    limited = sampler.sample(1, n_way=5, n_train_per_class=100)[0]
    assert len(limited.train_index) == 500
