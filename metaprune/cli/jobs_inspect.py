"""The ``inspect`` job: what a bank, pruned network or backbone file holds, as lines of text."""

from __future__ import annotations

from pathlib import Path

__all__ = ["describe_file"]


def describe_file(path, limit=20) -> list:
    """Describe a bank, pruned network or backbone file, as lines of text.

    Parameters
    ----------
    path : str or path-like
    limit : int, default=20
        Bank tasks listed (0: all).

    Returns
    -------
    list of str

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If it is none of those files, or is damaged.
    """
    import json

    from ..backbone.safetensors_reader import safetensors_format
    from ..channels.complexity import count_flops, count_parameters

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    size = f"{path.stat().st_size / 1e6:.2f} MB"
    with path.open("rb") as f:
        head = f.read(16)
    if head.startswith(b"SQLite format 3"):
        from ..bank import PrunedModelBank

        with PrunedModelBank.open(path, read_only=True) as bank:
            ids = bank.task_ids
            lines = [f"bank {path} ({size}): {len(ids)} tasks, labels {bank.label_kind}, "
                     f"backbone {bank.fingerprint[:12]} ({count_parameters(bank.backbone)} parameters)",
                     "groups: " + ", ".join(f"{g.name}={g.size}" for g in bank.filter_space)]
            shown = ids if not limit else ids[:limit]
            for task_id in shown:
                record = bank.record(task_id, weights=False)  # text fields only: no weight blob is read
                kept = sum(len(v) for v in record.selection.values())
                metrics = dict(record.metrics)
                cost = (f"params {metrics.pop('n_params', '?')}, FLOPs/image {metrics.pop('flops', '?')}, ")
                rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
                lines.append(f"  {task_id}: classes {record.classes.tolist()}, {kept} channels kept, {cost}"
                             f"metrics {json.dumps(rounded)}")
            if len(shown) < len(ids):
                lines.append(f"  ... and {len(ids) - len(shown)} more tasks (--limit 0 lists all)")
        return lines
    fmt = safetensors_format(path)
    if fmt == "metaprune.pruned":
        from ..channels.pruned_model import load_pruned

        model = load_pruned(path)
        flops = count_flops(model.module, model.input_shape)
        return [f"pruned network {path} ({size}): classes {model.classes_.tolist()}, "
                f"input {model.input_shape}",
                f"parameters {count_parameters(model.module)}, FLOPs/image {flops}",
                "kept channels: " + ", ".join(f"{g}={len(v)}" for g, v in model.selection.items()),
                "metadata: " + json.dumps(model.metadata, default=str)]
    if fmt == "metaprune.backbone":
        from ..channels.filter_space import FilterSpace, input_channels
        from ..backbone.resnet import backbone_metadata, load_backbone

        net = load_backbone(path)
        metadata = backbone_metadata(path)
        shape = _stored_chw(metadata.get("image_shape"), input_channels(net))
        flops = "" if shape is None else f", FLOPs/image {_flops_or_na(net, shape)}"
        return [f"backbone {path} ({size}): {count_parameters(net)} parameters{flops}",
                "groups: " + ", ".join(f"{g.name}={g.size}" for g in FilterSpace.from_model(net)),
                "metadata: " + json.dumps(metadata)]
    raise ValueError(f"{path} is not a metaprune bank, pruned network or backbone file")


def _stored_chw(image_shape, in_channels):
    """(C, H, W) of a backbone's stored ``image_shape`` (H, W, C), or None when absent or unusable."""
    from ..data.checks import check_input_shape

    if not isinstance(image_shape, list) or len(image_shape) != 3:
        return None
    try:
        return check_input_shape((image_shape[2], image_shape[0], image_shape[1]), in_channels)
    except ValueError:
        return None


def _flops_or_na(net, shape):
    """FLOPs of ``net`` on one image of ``shape``, or a note when it does not run on that shape."""
    from ..channels.complexity import count_flops

    try:
        return count_flops(net, shape)
    except RuntimeError:  # e.g. a stored image shape smaller than the stem's kernel
        return f"n/a (the network does not run on images of shape {shape})"
