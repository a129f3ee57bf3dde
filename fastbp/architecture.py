"""A network's architecture: checking a list of layer specs, and describing it for
``Sequential.summary()``."""
from .layers import Activation, Dense, Dropout, Residual
from .normalization import BatchNorm, LayerNorm

_LAYER_KINDS = (Dense, Dropout, Activation, BatchNorm, LayerNorm, Residual)


def check_layers(layers):
    """The specs as a tuple, checked: known layer kinds, widths chaining from layer to layer
    (through Residual blocks, whose output width must equal their input width), a Dense
    layer last (the loss is fused with its output), never two Dropouts in a row."""
    if isinstance(layers, _LAYER_KINDS):
        raise TypeError(f"layers must be a list of layers, got a single {type(layers).__name__}; "
                        f"wrap it in a list: Sequential([{layers!r}])")
    try:
        specs = tuple(layers)
    except TypeError:
        raise TypeError("layers must be a list of fastbp layers, got "
                        f"{type(layers).__name__}") from None
    if not any(isinstance(spec, Dense) for spec in specs):
        raise ValueError("layers must hold at least one Dense layer")
    check_chain(specs, "layers", None)
    last = len(specs) - 1
    if isinstance(specs[-1], Dropout):
        raise ValueError(
            f"layers[{last}] is a Dropout after the last Dense layer; dropout acts on the "
            "input of the next layer, so it cannot come last (dropping the network's output "
            "is not supported)")
    if not isinstance(specs[-1], Dense):
        raise ValueError(
            f"layers[{last}] is a {type(specs[-1]).__name__}: the last layer must be a Dense "
            "layer, whose output the loss takes (softmax and sigmoid are fused into the "
            "cross-entropy losses)")
    return specs


def check_chain(specs, where, width, source=None):
    """Check ``specs`` (at ``where``) given the input width (None: not known yet) and the
    attribute that set it (``source``); return the output width and its source."""
    for i, spec in enumerate(specs):
        name = f"{where}[{i}]"
        if not isinstance(spec, _LAYER_KINDS):
            raise TypeError(f"{name} must be a fastbp layer (Dense, Dropout, Activation, "
                            f"BatchNorm, LayerNorm or Residual), got {type(spec).__name__}")
        if isinstance(spec, Dropout) and i + 1 < len(specs) and isinstance(specs[i + 1], Dropout):
            raise ValueError(
                f"{name} and {where}[{i + 1}] are two Dropout layers in a row; use one "
                "Dropout with the combined rate 1 - (1 - p)(1 - q)")
        if isinstance(spec, Residual):
            out, out_source = check_chain(spec.layers, f"{name}.layers", width, source)
            if width is not None and out is not None and out != width:
                raise ValueError(f"{name} is a Residual block whose input width {width} "
                                 f"differs from its output width {out}; they are added, so "
                                 "they must be equal")
            if width is None:
                width, source = out, out_source
            continue
        attribute = "in_features" if isinstance(spec, Dense) else "num_features"
        n_in = getattr(spec, attribute, None)
        if n_in is not None and width is not None and n_in != width:
            raise ValueError(f"{name}.{attribute}={n_in} does not match {source}={width}")
        if isinstance(spec, Dense):
            width, source = spec.out_features, f"{name}.out_features"
        elif n_in is not None:
            width, source = n_in, f"{name}.num_features"
    return width, source


def summary_rows(specs, prefix, width):
    """(name, spec, (in, out)) per layer for summary(), a Residual's layers after it."""
    for i, spec in enumerate(specs):
        name = f"{prefix}{i}"
        if isinstance(spec, Residual):
            rows = list(summary_rows(spec.layers, name + ".", width))
            yield name, spec, (width, width)
            yield from rows
            continue
        out = spec.out_features if isinstance(spec, Dense) else width
        yield name, spec, (width, out)
        width = out


def describe(spec):
    if isinstance(spec, Dense):
        return spec.activation
    if isinstance(spec, Dropout):
        return "dropout " + format(spec.rate, "g")
    if isinstance(spec, Activation):
        return "act " + spec.activation
    if isinstance(spec, Residual):
        return f"residual ({len(spec.layers)})"
    return "batchnorm" if isinstance(spec, BatchNorm) else "layernorm"


def parameter_count(spec):
    if isinstance(spec, Dense):
        return (spec.in_features + 1) * spec.out_features
    if isinstance(spec, (BatchNorm, LayerNorm)):
        return 2 * spec.num_features if spec.affine else 0
    return 0
