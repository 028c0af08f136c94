"""Meta-vote pruning as pure functions: count votes, sample channels, average weights.

These are the array-level steps of Alg. 2 (``DESIGN.md`` section 4); the estimator is a
thin layer over them. Everything speaks in the *pre-trained* numbering of channels
(:class:`~metaprune.channels.selection.Selection`), except the state dicts, which are physically
pruned and indexed through their selection.

* :func:`vote_counts`: ``v(k)``, how many neighbours kept channel ``k`` of each group;
* :func:`sample_channels`: ``n_keep`` channels per group drawn without replacement from
  ``softmax(v / tau)`` (the paper's Eq. 1), as the top ``n_keep`` of ``v / tau + Gumbel``;
* :func:`uniform_channels`: the random baseline (the same sampler on zero votes);
* :func:`average_weights`: the new sub-network's initial weights, each the mean over the
  neighbours that have it, the pre-trained value where none has;
* :func:`average_head`: the neighbours' head rows for the classes they share with the new
  task, averaged in its channel numbering (a prior for its head; beyond the paper);
* :func:`iou_per_group`: overlap of two selections (the paper's Fig. 3 analysis).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..channels.filter_space import FilterSpace
from ..channels.selection import Selection, in_blocks
from ..data.random_state import as_generator

__all__ = ["vote_counts", "sample_channels", "uniform_channels", "average_weights", "average_head",
           "iou_per_group"]


# -- votes ----------------------------------------------------------------------------------------

def vote_counts(selections: Sequence[Selection], sizes: Mapping) -> dict:
    """How many selections keep each channel, per group.

    Parameters
    ----------
    selections : sequence of Selection
        The neighbours' selections, in the pre-trained numbering. May be empty (all votes 0).
    sizes : mapping of str to int
        Pre-trained number of channels per group (e.g. ``FilterSpace.sizes``); the result
        has these groups, in this order.

    Returns
    -------
    dict of str to numpy.ndarray
        ``votes[g][k]`` (int64, length ``sizes[g]``) is the number of selections that keep
        channel ``k`` of group ``g``. It does not depend on the order of ``selections``.

    Raises
    ------
    ValueError
        If a selection lacks a group of ``sizes`` or keeps a channel out of range.

    Examples
    --------
    >>> a, b = Selection({"layer1": [0, 2]}), Selection({"layer1": [2, 3]})
    >>> vote_counts([a, b], {"layer1": 5})["layer1"]
    array([1, 0, 2, 1, 0])
    """
    selections = list(selections)
    votes = {}
    for group, size in sizes.items():
        size = _check_count(size, f"sizes[{group!r}]", minimum=1)
        missing = [i for i, sel in enumerate(selections) if group not in sel]
        if missing:
            raise ValueError(f"group {group!r}: selection(s) {missing} do not have this group")
        kept = np.concatenate([sel[group] for sel in selections]) if selections else np.zeros(0, np.int64)
        if kept.size and kept.max() >= size:
            raise ValueError(f"group {group!r}: a selection keeps channel {int(kept.max())}, "
                             f"out of range for {size} channels")
        votes[group] = np.bincount(kept, minlength=size).astype(np.int64)
    return votes


# -- sampling -------------------------------------------------------------------------------------

def sample_channels(votes: Mapping, n_keep: Mapping, temperature: float, random_state=None,
                    units: Mapping | None = None) -> Selection:
    """Sample ``n_keep`` channels per group without replacement from ``softmax(votes / temperature)``.

    Sequential sampling without replacement from a softmax is the same distribution as the
    top ``n_keep`` of ``votes / temperature + G`` with i.i.d. standard Gumbel noise ``G``
    (the Gumbel-top-k trick), which needs no exponential and so stays exact for tiny
    temperatures (``votes / temperature`` of 400 and more). Ties of that key (only possible
    when the noise is lost to rounding) are broken by the noise itself, so channels of
    equal votes stay exchangeable. Where ``votes / temperature`` overflows, the zero-
    temperature limit is used: the most-voted channels, ties broken uniformly at random.

    Parameters
    ----------
    votes : mapping of str to array-like of shape (n_channels,)
        Non-negative votes per channel of every group (e.g. from :func:`vote_counts`);
        they may be non-integer (weighted votes).
    n_keep : mapping of str to int
        Channels to keep per group, ``1 <= n_keep[g] <= len(votes[g])``; exactly the groups
        of ``votes``.
    temperature : float
        Softmax temperature ``tau > 0`` (the paper uses 0.025 on raw vote counts). Small:
        close to taking the most-voted channels; large: close to uniform.
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState
        Source of the Gumbel noise. Groups draw their noise in sorted name order, so a
        seed gives the same selection whatever the order of ``votes``.
    units : mapping of str to int, optional
        Groups kept in whole blocks (:attr:`FilterSpace.units`): such a group samples
        ``n_keep / unit`` blocks by their mean vote. Default: every channel on its own.

    Returns
    -------
    Selection
        The sampled channels, groups in the order of ``votes``.

    Raises
    ------
    ValueError
        For a non-positive or non-finite temperature, negative or non-finite votes, an
        ``n_keep`` out of range or groups that differ between ``votes`` and ``n_keep``;
        the message names the group.

    Examples
    --------
    >>> votes = {"layer1": np.array([3, 0, 3, 1])}
    >>> sample_channels(votes, {"layer1": 2}, temperature=0.025, random_state=0)["layer1"]
    array([0, 2])
    """
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) \
            or not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    extra = [g for g in n_keep if g not in votes]
    if extra:
        raise ValueError(f"n_keep has groups {extra} that have no votes")
    checked = {}
    for group, v in votes.items():
        v = np.asarray(v)
        if v.ndim != 1 or v.size == 0 or v.dtype.kind not in "biuf":
            raise ValueError(f"group {group!r}: votes must be a non-empty 1-D numeric array, "
                             f"got {v.dtype} of shape {v.shape}")
        v = v.astype(np.float64)
        if not np.all(np.isfinite(v)) or np.any(v < 0):
            raise ValueError(f"group {group!r}: votes must be finite and non-negative")
        if group not in n_keep:
            raise ValueError(f"group {group!r}: n_keep has no entry for this group")
        k = _check_count(n_keep[group], f"group {group!r}: n_keep", minimum=1)
        if k > v.size:
            raise ValueError(f"group {group!r}: n_keep={k} exceeds the group's {v.size} channels")
        checked[group] = (v, k)
    rng = as_generator(random_state)
    units = units or {}
    kept = {group: in_blocks(_gumbel_top_k, checked[group][0], checked[group][1], int(units.get(group, 1)),
                              group, temperature, rng) for group in sorted(checked)}
    return Selection({group: kept[group] for group in checked})


def uniform_channels(sizes: Mapping, n_keep: Mapping, random_state=None, units: Mapping | None = None) -> Selection:
    """Keep ``n_keep`` channels per group drawn uniformly without replacement (the random baseline).

    This is :func:`sample_channels` on all-zero votes, so it shares its validation and its
    seeding (groups draw in sorted name order).

    Parameters
    ----------
    sizes : mapping of str to int
        Pre-trained number of channels per group.
    n_keep : mapping of str to int
        Channels to keep per group, ``1 <= n_keep[g] <= sizes[g]``.
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState
    units : mapping of str to int, optional
        Groups kept in whole blocks (see :func:`sample_channels`).

    Returns
    -------
    Selection

    Examples
    --------
    >>> sel = uniform_channels({"layer1": 8, "layer2": 16}, {"layer1": 2, "layer2": 4}, random_state=0)
    >>> sel.n_kept
    {'layer1': 2, 'layer2': 4}
    """
    zeros = {group: np.zeros(_check_count(size, f"sizes[{group!r}]", minimum=1))
             for group, size in sizes.items()}
    return sample_channels(zeros, n_keep, temperature=1.0, random_state=random_state, units=units)


def _gumbel_top_k(votes: np.ndarray, n_keep: int, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of the ``n_keep`` largest ``votes / temperature + Gumbel`` (ties: by the noise)."""
    noise = rng.gumbel(size=votes.size)
    with np.errstate(over="ignore"):
        scaled = votes / temperature
    # votes / tau overflowed: the zero-temperature limit, where the noise only breaks ties
    key = scaled + noise if np.all(np.isfinite(scaled)) else votes
    order = np.lexsort((-noise, -key))  # last key is primary: descending key, then descending noise
    return np.sort(order[:n_keep])


def _check_count(value, name: str, minimum: int) -> int:
    """``value`` as an int ``>= minimum`` (numpy integers accepted), or a ValueError naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


# -- overlap --------------------------------------------------------------------------------------

def iou_per_group(sel_a: Selection, sel_b: Selection) -> dict:
    """Intersection over union of the kept channels of two selections, per group.

    Parameters
    ----------
    sel_a, sel_b : Selection
        Selections with the same groups, in the pre-trained numbering.

    Returns
    -------
    dict of str to float
        ``|a ∩ b| / |a ∪ b|`` per group, in the order of ``sel_a``.

    Examples
    --------
    >>> iou_per_group(Selection({"layer1": [0, 1, 2]}), Selection({"layer1": [1, 2, 3]}))
    {'layer1': 0.5}
    """
    if set(sel_a) != set(sel_b):
        raise ValueError(f"the selections have different groups: {sorted(set(sel_a) ^ set(sel_b))}")
    out = {}
    for group, a in sel_a.items():
        b = sel_b[group]
        inter = np.intersect1d(a, b, assume_unique=True).size
        out[group] = inter / (a.size + b.size - inter)
    return out


# -- weight averaging -----------------------------------------------------------------------------

def average_weights(neighbours: Sequence, target: Selection, space: FilterSpace, fallback: Mapping) -> dict:
    """Initial weights of the target sub-network: the neighbours' mean, pre-trained where none has it.

    Works entirely in the pruned numbering: for every tensor and neighbour, the kept
    channels of each axis are intersected with the target's, and only that sub-block is
    added into a target-shaped sum. How many neighbours have each entry depends only on
    the groups of the tensor's axes, so it is computed once per axis combination, as a
    product of per-group membership matrices. No full-size tensor is built per neighbour.

    The arithmetic runs in NumPy on the CPU (float64): its indexing is single-threaded, while
    torch's parallel index kernels stall for milliseconds per call when their threads compete
    for a busy CPU, and this is thousands of small calls. Results are moved to the device of
    the fallback's tensors.

    Parameters
    ----------
    neighbours : sequence of (Selection, mapping of str to torch.Tensor)
        Each neighbour's selection and the state dict of its physically pruned network
        (keys as in the pre-trained network, tensors sliced to the selection). Keys not in
        ``fallback`` (e.g. heads ``fc.*`` with other class counts) are ignored.
    target : Selection
        The new task's channels, validated against ``space``.
    space : FilterSpace
        The pre-trained network's filter space.
    fallback : mapping of str to torch.Tensor
        Pre-trained state dict restricted to the entries to initialise (normally the
        backbone without ``fc.*``). Its keys, devices and dtypes are those of the result.

    Returns
    -------
    dict of str to torch.Tensor
        Shaped like ``gather_state(fallback, target, space)``. An entry is the mean over the
        neighbours whose pruned model contains it (a convolution weight: the neighbour kept
        both its output and its input channel; a BatchNorm vector or running statistic:
        the neighbour kept the channel), and the pre-trained value where no neighbour does.
        Entries not indexed by any group (``num_batches_tracked``, ...) and non-floating
        entries are the fallback's (copies). The result does not depend on the neighbours'
        order beyond floating-point rounding (sums are accumulated in float64).

    Raises
    ------
    ValueError
        If a neighbour's state lacks a key of ``fallback``, or one of its tensors does not
        match its selection's channel counts or differs from the fallback along an axis no
        group indexes.
    """
    target.validate(space)
    neighbours = [(sel.validate(space), state) for sel, state in neighbours]
    for i, (_, state) in enumerate(neighbours):
        missing = [key for key in fallback if key not in state]
        if missing:
            raise ValueError(f"neighbour {i}'s pruned state lacks {len(missing)} entries of the fallback, "
                             f"e.g. {missing[:3]}")
    # per (neighbour, axis): positions of the common channels in the target and in the neighbour
    common = [_CommonPositions(space, target, sel) for sel, _ in neighbours]
    counts: dict = {}  # per (axes, leading shape): how many neighbours have each entry
    out = {}
    for key, full in fallback.items():
        axes = space.tensor_axes(key)
        if not full.is_floating_point() or all(g is None for g in axes):
            out[key] = _cut(full, axes, target, space)
            continue
        base = _cut(_as_numpy(full), axes, target, space)
        signature = (axes, base.shape[:len(axes)])
        if signature not in counts:
            counts[signature] = _presence_count(common, *signature)
        count = counts[signature].reshape(signature[1] + (1,) * (base.ndim - len(axes)))
        total = np.zeros(base.shape)
        for (sel, state), positions in zip(neighbours, common):
            _accumulate_(total, _as_numpy(state[key]), key, axes, sel, positions, tuple(full.shape))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, total / count, base)
        out[key] = torch.from_numpy(mean).to(device=full.device, dtype=full.dtype)
    return out


def average_head(neighbours: Sequence, neighbour_classes: Sequence, classes, target: Selection,
                 space: FilterSpace) -> tuple:
    """The neighbours' task heads, mapped onto the new task's classes and channels, averaged.

    A neighbour's head row for class ``k`` says how that class reads the neighbour's last
    features; where the new task has class ``k`` too and keeps a feature channel the neighbour
    kept, that weight is a guess at the new task's. Each entry is the mean over the
    neighbours that have both the class and the channel; a bias, over those that have the
    class. Entries no neighbour has are zero, the usual starting point of a head.

    Parameters
    ----------
    neighbours : sequence of (Selection, mapping of str to torch.Tensor)
        As in :func:`average_weights`; each state holds the neighbour's head
        (``<head>.weight`` of shape ``(n_classes_i, n_features_i)``, optional ``<head>.bias``).
    neighbour_classes : sequence of array-like
        The class labels of each neighbour, in the order of its head's rows.
    classes : array-like
        The new task's class labels, in the order of its head's rows.
    target : Selection
        The new task's channels.
    space : FilterSpace
        The pre-trained network's filter space; its head's input axis maps the features.

    Returns
    -------
    weight : numpy.ndarray of shape (len(classes), n_features), float64
    bias : numpy.ndarray of shape (len(classes),), float64
    known : numpy.ndarray of bool, shape (len(classes),)
        Which classes at least one neighbour has.

    Raises
    ------
    ValueError
        If the counts of neighbours and class lists differ, or a neighbour's head does not
        match its classes or its selection.
    """
    from ..channels.filter_space import head_name

    if len(neighbours) != len(neighbour_classes):
        raise ValueError(f"{len(neighbours)} neighbours but {len(neighbour_classes)} class lists")
    target.validate(space)
    head = head_name(space)
    axis = space.tensor_axes(f"{head}.weight")[1]
    n_features = len(space.axis_positions(axis, target))
    classes = list(np.asarray(classes).tolist())
    weight_sum = np.zeros((len(classes), n_features))
    weight_count = np.zeros((len(classes), n_features))
    bias_sum = np.zeros(len(classes))
    bias_count = np.zeros(len(classes))
    known = np.zeros(len(classes), dtype=bool)
    for i, ((selection, state), labels) in enumerate(zip(neighbours, neighbour_classes)):
        selection = selection.validate(space)
        labels = list(np.asarray(labels).tolist())
        weight = _as_numpy(state[f"{head}.weight"])
        positions = _CommonPositions(space, target, selection)
        if weight.shape != (len(labels), positions.kept(axis)):
            raise ValueError(f"neighbour {i}'s head has shape {weight.shape}, but it has {len(labels)} "
                             f"classes and its selection keeps {positions.kept(axis)} features")
        bias = state.get(f"{head}.bias")
        bias = None if bias is None else _as_numpy(bias)
        in_target, in_neighbour = positions[axis]
        row_of = {label: row for row, label in enumerate(labels)}
        for row, label in enumerate(classes):
            source = row_of.get(label)
            if source is None:
                continue
            known[row] = True
            weight_sum[row, in_target] += weight[source, in_neighbour]
            weight_count[row, in_target] += 1
            if bias is not None:
                bias_sum[row] += bias[source]
                bias_count[row] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.where(weight_count > 0, weight_sum / weight_count, 0.0)
        bias = np.where(bias_count > 0, bias_sum / bias_count, 0.0)
    return weight, bias, known


def _as_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A NumPy view (CPU) of ``tensor``; dtypes NumPy lacks (bfloat16) are widened to float32."""
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.numpy()


def _cut(array, axes: tuple, selection: Selection, space: FilterSpace):
    """``array`` (tensor or ndarray) cut to ``selection``'s channels along each group axis (a copy)."""
    for dim, axis in enumerate(axes):
        if axis is not None:
            index = space.axis_positions(axis, selection)
            array = array.take(index, dim) if isinstance(array, np.ndarray) else \
                array.index_select(dim, torch.as_tensor(index, device=array.device))
    return array.clone() if isinstance(array, torch.Tensor) and not any(axes) else array


def _common_positions(target_idx: np.ndarray, kept_idx: np.ndarray) -> tuple:
    """Positions in the target and in the neighbour of the channels both keep."""
    _, in_target, in_kept = np.intersect1d(target_idx, kept_idx, assume_unique=True, return_indices=True)
    return in_target, in_kept


class _CommonPositions:
    """Per axis (a group, or a concatenation / repetition of groups): the positions in the target
    and in one neighbour of the entries both have, computed once per axis."""

    def __init__(self, space: FilterSpace, target: Selection, neighbour: Selection):
        self.space, self.target, self.neighbour = space, target, neighbour
        self.n_kept = neighbour.n_kept
        self._cache: dict = {}

    def __getitem__(self, axis) -> tuple:
        if axis not in self._cache:
            self._cache[axis] = _common_positions(self.space.axis_positions(axis, self.target),
                                                  self.space.axis_positions(axis, self.neighbour))
        return self._cache[axis]

    def kept(self, axis) -> int:
        """Entries of the neighbour's pruned tensors along ``axis``."""
        return self.space.axis_size(axis, self.n_kept)


def _presence_count(common: list, axes: tuple, shape: tuple) -> np.ndarray:
    """Neighbours having each entry of a target tensor whose leading axes are ``axes`` (float64).

    A neighbour has an entry when it kept the entry's channel on every group axis, so the
    count is ``sum_i prod_axis member_i[axis]``: one einsum over per-axis membership matrices
    of shape (n_neighbours, axis length).
    """
    members = []
    for group, size in zip(axes, shape):
        member = np.ones((len(common), size))
        if group is not None:
            member[:] = 0.0
            for i, positions in enumerate(common):
                member[i, positions[group][0]] = 1.0
        members.append(member)
    letters = "abcdefgh"[:len(axes)]
    return np.einsum(",".join(f"n{c}" for c in letters) + "->" + letters, *members)


def _accumulate_(total: np.ndarray, tensor: np.ndarray, key, axes, sel, positions, full_shape) -> None:
    """Add the part of one neighbour's ``tensor`` that the target also has into ``total``."""
    n = len(axes)
    target_index, source_index = [], []
    for dim, group in enumerate(axes):
        if group is None:
            if tensor.shape[dim] != full_shape[dim]:
                raise ValueError(f"{key}: axis {dim} has {tensor.shape[dim]} entries in a neighbour's state "
                                 f"but {full_shape[dim]} in the pre-trained one")
            everything = np.arange(full_shape[dim])
            target_index.append(everything)
            source_index.append(everything)
            continue
        if tensor.shape[dim] != positions.kept(group):
            raise ValueError(f"{key}: axis {dim} has {tensor.shape[dim]} entries but the neighbour's "
                             f"selection keeps {positions.kept(group)} channels of group {group!r}")
        in_target, in_source = positions[group]
        target_index.append(in_target)
        source_index.append(in_source)
    if tuple(tensor.shape[n:]) != tuple(full_shape[n:]):
        raise ValueError(f"{key}: a neighbour's tensor has shape {tuple(tensor.shape)}, incompatible with "
                         f"the pre-trained {tuple(full_shape)}")
    if any(idx.size == 0 for idx in target_index):
        return  # the neighbour has none of the target's entries of this tensor
    # open grids select the whole sub-block; indices are unique, so += never drops a duplicate
    total[np.ix_(*target_index)] += tensor[np.ix_(*source_index)]
