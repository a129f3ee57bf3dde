"""Export a trained model as a standard ONNX graph (needs the ``onnx`` package:
``pip install "fastbp[onnx]"``).

A. What the graph computes: exactly :meth:`fastbp.Sequential.predict`. Input ``X`` of shape
   (n_samples, n_features), the batch dimension dynamic (``"n_samples"``), in the model's
   dtype; output ``Y`` of shape (n_samples, n_outputs): softmax probabilities for
   ``cross_entropy``, per-output sigmoid probabilities for ``binary_cross_entropy``, the
   rate ``exp(z)`` for ``poisson``, the last layer's activated output for the other
   regression losses. Dropout is inference-time
   identity, so it adds no node.
B. How it is built: one small converter per layer kind (:data:`LAYER_CONVERTERS`, keyed by
   the class of the entries of ``model.layers``, or a base class of it), one per activation
   (:data:`ACTIVATION_CONVERTERS`) and one per loss's output function
   (:data:`OUTPUT_CONVERTERS`). Each takes the :class:`GraphBuilder` and the name of its
   input and returns the name of its output. A new layer kind is one converter and one
   table entry: BatchNorm is ``BatchNormalization`` with the running mean and variance as
   initializers, LayerNorm ``LayerNormalization`` over the last axis, a standalone
   Activation its activation's nodes, a residual block its layers' nodes and an ``Add``.
   Anything without a converter raises :class:`NotImplementedError` naming it.
C. Operators: MatMul + Add for Dense layers and the standard activation operators (opset
   20, for ``Gelu`` with ``approximate="tanh"``). onnxruntime has no float64 kernels for
   ``LeakyRelu``, ``Softplus`` and ``Elu``, and its float64 ``Gelu`` is off by up to 3e-8
   relative (onnxruntime 1.32), so float64 models write those four as the same functions
   of ``Max``, ``Exp``, ``Log``, ``Tanh`` and ``Where``.
D. scikit-learn estimators (:mod:`fastbp.sklearn`) export their ``model_``: an
   ``MLPRegressor`` its outputs (shape (n_samples, n_outputs) even for one output, where
   ``predict`` ravels), an ``MLPClassifier`` the probabilities of ``predict_proba`` (for a
   binary problem both columns, ``[1 - p, p]``). Labels are not computed in the graph:
   the label of a row is ``classes_[argmax]`` of its probabilities (a multi-label problem:
   each probability > 0.5), and the classes are stored in the model's metadata under
   ``"classes"`` (JSON), so that a runtime without fastbp can map them.
"""
import json

import numpy as np

from .activations import ELU_ALPHA, LEAKY_RELU_SLOPE, ActivationCode as Activation
from .bound import BoundDense, BoundNorm, BoundResidual
from .layers import Activation as ActivationLayer, Dropout
from .losses import Loss, loss_code
from .normalization import BatchNorm

#: The ONNX operator set the exported graphs use (20: ``Gelu``'s first version).
OPSET = 20
#: The ONNX IR version written (9: the oldest that opset 20 allows, for older runtimes).
IR_VERSION = 9


class GraphBuilder:
    """Collects the nodes and initializers of one graph, in one dtype.

    Parameters
    ----------
    dtype : numpy dtype
        The dtype of every tensor (float32 or float64).

    Attributes
    ----------
    nodes : list of onnx.NodeProto
    initializers : list of onnx.TensorProto
    """

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self.nodes, self.initializers = [], []
        self._count = 0

    def _name(self, hint):
        self._count += 1
        return f"{hint}_{self._count}"

    def constant(self, value, hint):
        """Add ``value`` (cast to the graph's dtype) as an initializer; return its name."""
        from onnx import numpy_helper

        name = self._name(hint)
        array = np.ascontiguousarray(np.asarray(value, dtype=self.dtype))
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op_type, inputs, hint=None, **attributes):
        """Add one ``op_type`` node on ``inputs`` (names); return its output's name."""
        from onnx import helper

        output = self._name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [output],
                                           name=f"{output}_node", **attributes))
        return output

    def rename_output(self, old, new):
        """Make the node that writes ``old`` write ``new`` (the graph's output name)."""
        producers = [node for node in self.nodes if old in node.output]
        if len(producers) != 1:
            raise ValueError(f"{old!r} is not the output of exactly one node")
        outputs = producers[0].output
        outputs[list(outputs).index(old)] = new


# --- activations: (builder, z) -> name of activation(z) ---------------------------------

def _softplus(graph, z):
    if graph.dtype == np.float32:
        return graph.node("Softplus", [z])
    # max(z, 0) + log(1 + exp(-|z|)): never overflows.
    tail = graph.node("Exp", [graph.node("Neg", [graph.node("Abs", [z])])])
    log = graph.node("Log", [graph.node("Add", [graph.constant(1.0, "one"), tail])])
    return graph.node("Add", [graph.node("Relu", [z]), log], hint="softplus")


def _elu(graph, z):
    if graph.dtype == np.float32:
        return graph.node("Elu", [z], alpha=ELU_ALPHA)
    zero = graph.constant(0.0, "zero")
    # exp(min(z, 0)) - 1 for the negative side: no overflow where z is large.
    negative = graph.node("Sub", [graph.node("Exp", [graph.node("Min", [z, zero])]),
                                  graph.constant(1.0, "one")])
    if ELU_ALPHA != 1.0:
        negative = graph.node("Mul", [negative, graph.constant(ELU_ALPHA, "alpha")])
    return graph.node("Where", [graph.node("Greater", [z, zero]), z, negative], hint="elu")


def _leaky_relu(graph, z):
    if graph.dtype == np.float32:
        return graph.node("LeakyRelu", [z], alpha=LEAKY_RELU_SLOPE)
    # max(z, slope z) for a slope below 1.
    scaled = graph.node("Mul", [z, graph.constant(LEAKY_RELU_SLOPE, "slope")])
    return graph.node("Max", [z, scaled], hint="leaky_relu")


def _gelu(graph, z):
    if graph.dtype == np.float32:
        return graph.node("Gelu", [z], approximate="tanh")
    # z/2 (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))).
    cube = graph.node("Mul", [graph.node("Mul", [z, z]), z])
    inner = graph.node("Add", [z, graph.node("Mul", [cube, graph.constant(0.044715, "c")])])
    inner = graph.node("Mul", [inner, graph.constant(np.sqrt(2 / np.pi), "sqrt_2_pi")])
    half = graph.node("Mul", [z, graph.constant(0.5, "half")])
    one_plus = graph.node("Add", [graph.constant(1.0, "one"), graph.node("Tanh", [inner])])
    return graph.node("Mul", [half, one_plus], hint="gelu")


def _swish(graph, z):
    return graph.node("Mul", [z, graph.node("Sigmoid", [z])], hint="swish")


#: Activation -> converter (builder, input name) -> output name.
ACTIVATION_CONVERTERS = {
    Activation.IDENTITY: lambda graph, z: z,
    Activation.SIGMOID: lambda graph, z: graph.node("Sigmoid", [z]),
    Activation.TANH: lambda graph, z: graph.node("Tanh", [z]),
    Activation.RELU: lambda graph, z: graph.node("Relu", [z]),
    Activation.LEAKY_RELU: _leaky_relu,
    Activation.GELU: _gelu,
    Activation.SOFTPLUS: _softplus,
    Activation.ELU: _elu,
    Activation.SWISH: _swish,
}


# --- layers: (builder, layer, index, x) -> name of the layer's output -------------------

def _activate(graph, spec, index, z):
    code = spec.activation_code
    if code not in ACTIVATION_CONVERTERS:
        raise NotImplementedError(
            f"fastbp.onnx.export: activation {spec.activation!r} of model.layers[{index}] "
            "has no ONNX converter")
    return ACTIVATION_CONVERTERS[code](graph, z)


def _dense(graph, layer, index, x):
    z = graph.node("MatMul", [x, graph.constant(layer.weight, f"W{index}")])
    z = graph.node("Add", [z, graph.constant(layer.bias, f"b{index}")])
    return _activate(graph, layer.spec, index, z)


def _activation(graph, layer, index, x):
    return _activate(graph, layer, index, x)


def _dropout(graph, layer, index, x):
    return x  # inference: dropout is the identity


def _norm(graph, layer, index, x):
    """BatchNorm with its running statistics (predict's), or LayerNorm; γ = 1 and β = 0
    without affine."""
    n = layer.num_features
    scale = graph.constant(layer.weight if layer.weight is not None else np.ones(n),
                           f"gamma{index}")
    shift = graph.constant(layer.bias if layer.bias is not None else np.zeros(n),
                           f"beta{index}")
    if isinstance(layer.spec, BatchNorm):
        return graph.node("BatchNormalization",
                          [x, scale, shift, graph.constant(layer.running_mean, f"mean{index}"),
                           graph.constant(layer.running_var, f"var{index}")],
                          epsilon=layer.eps)
    return graph.node("LayerNormalization", [x, scale, shift], axis=-1, epsilon=layer.eps)


def _residual(graph, layer, index, x):
    y = _convert_layers(graph, layer.layers, x, f"{index}].layers[")
    return graph.node("Add", [x, y], hint="residual")


#: Layer class (of the entries of ``model.layers``) -> converter.
LAYER_CONVERTERS = {BoundDense: _dense, Dropout: _dropout, ActivationLayer: _activation,
                    BoundNorm: _norm, BoundResidual: _residual}


def _convert_layers(graph, layers, x, prefix=""):
    """Each layer's nodes in turn from input ``x``; the name of the last output."""
    for position, layer in enumerate(layers):
        index = f"{prefix}{position}"
        converter = next((LAYER_CONVERTERS[kind] for kind in type(layer).__mro__
                          if kind in LAYER_CONVERTERS), None)
        if converter is None:
            raise NotImplementedError(
                f"fastbp.onnx.export: model.layers[{index}] is a {type(layer).__name__}, which "
                "has no ONNX converter; supported layers: "
                + ", ".join(kind.__name__ for kind in LAYER_CONVERTERS))
        x = converter(graph, layer, index, x)
    return x


# --- outputs: the function each loss applies to the last layer's output -----------------

#: Loss -> converter (builder, input name) -> output name, as ``predict`` defines it.
OUTPUT_CONVERTERS = {
    Loss.MSE: lambda graph, y: y,
    Loss.HUBER: lambda graph, y: y,
    Loss.MAE: lambda graph, y: y,
    Loss.CROSS_ENTROPY: lambda graph, y: graph.node("Softmax", [y], axis=-1),
    Loss.BINARY_CROSS_ENTROPY: lambda graph, y: graph.node("Sigmoid", [y]),
    Loss.POISSON: lambda graph, y: graph.node("Exp", [y]),  # the rate from the log-rate
}


def _require_onnx():
    try:
        import onnx
    except ImportError as error:
        raise ImportError("fastbp.onnx.export needs the onnx package: "
                          "pip install \"fastbp[onnx]\" (or pip install onnx)") from error
    return onnx


def _unwrap(model):
    """The Sequential behind ``model`` and what an estimator adds: (sequential, classes or
    None, whether to append ``1 - p`` for a binary classifier)."""
    from .model import Sequential

    if isinstance(model, Sequential):
        return model, None, False
    inner = getattr(model, "model_", None)
    if inner is None and type(model).__module__.startswith("fastbp.sklearn"):
        raise ValueError(f"model: this {type(model).__name__} is not fitted yet; call fit "
                         "before exporting it")
    if not isinstance(inner, Sequential):
        raise TypeError("model must be a fastbp.Sequential or a fitted fastbp.sklearn "
                        f"estimator, not {type(model).__name__}")
    classes = getattr(model, "classes_", None)
    binary = classes is not None and inner.n_outputs == 1 and len(classes) == 2
    return inner, classes, binary


def to_onnx(model, name="fastbp"):
    """Build the ONNX model of ``model`` in memory (:func:`export` writes it to a file).

    Parameters
    ----------
    model : fastbp.Sequential or fitted fastbp.sklearn estimator
    name : str, default "fastbp"
        The graph's name.

    Returns
    -------
    onnx.ModelProto
        Input ``X`` (n_samples, n_features), output ``Y`` (n_samples, n_outputs), in the
        model's dtype; see this module's docstring for what ``Y`` holds.

    Raises
    ------
    ImportError
        If the onnx package is not installed.
    TypeError
        If ``model`` is neither a Sequential nor a fastbp.sklearn estimator.
    NotImplementedError
        If a layer kind, activation or loss has no converter (the message names it).
    """
    onnx = _require_onnx()
    from onnx import helper

    sequential, classes, binary = _unwrap(model)
    graph = GraphBuilder(sequential.dtype)
    x = _convert_layers(graph, sequential.layers, "X")
    loss = loss_code(sequential.loss)
    if loss not in OUTPUT_CONVERTERS:
        raise NotImplementedError(f"fastbp.onnx.export: loss {sequential.loss!r} has no ONNX "
                                  "output converter")
    y = OUTPUT_CONVERTERS[loss](graph, x)
    if binary:  # predict_proba's two columns, [1 - p, p]
        y = graph.node("Concat", [graph.node("Sub", [graph.constant([[1.0]], "one"), y]), y],
                       axis=1)
    graph.rename_output(y, "Y")
    elem_type = helper.np_dtype_to_tensor_dtype(graph.dtype)
    n_outputs = 2 if binary else sequential.n_outputs
    graph_proto = helper.make_graph(
        graph.nodes, name,
        [helper.make_tensor_value_info("X", elem_type, ["n_samples", sequential.n_features])],
        [helper.make_tensor_value_info("Y", elem_type, ["n_samples", n_outputs])],
        initializer=graph.initializers)
    onnx_model = helper.make_model(graph_proto, opset_imports=[helper.make_opsetid("", OPSET)],
                                   ir_version=IR_VERSION, producer_name="fastbp")
    metadata = {"loss": sequential.loss}
    if classes is not None:
        metadata["classes"] = json.dumps(np.asarray(classes).tolist())
    helper.set_model_props(onnx_model, metadata)
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model


def export(model, path, name="fastbp"):
    """Write ``model`` to ``path`` as an ONNX file that computes ``model.predict``.

    Parameters
    ----------
    model : fastbp.Sequential or fitted fastbp.sklearn estimator
        For an ``MLPClassifier`` the graph outputs ``predict_proba``'s probabilities (see
        this module's docstring for labels).
    path : str or os.PathLike
        The file to write (conventionally ``*.onnx``).
    name : str, default "fastbp"
        The graph's name.

    Returns
    -------
    onnx.ModelProto
        The model written (input ``X``, output ``Y``, batch dimension dynamic).

    Raises
    ------
    ImportError
        If the onnx package is not installed (``pip install "fastbp[onnx]"``).
    TypeError, ValueError, NotImplementedError
        As :func:`to_onnx`: not a model, an unfitted estimator, or a layer kind, activation
        or loss without a converter (named in the message).

    Examples
    --------
    >>> import numpy as np, onnx
    >>> import fastbp as fb
    >>> from fastbp.onnx import export
    >>> model = fb.mlp([4, 8, 3], activation="tanh", loss="cross_entropy", seed=0)
    >>> proto = export(model, "model.onnx")
    >>> [node.op_type for node in onnx.load("model.onnx").graph.node]
    ['MatMul', 'Add', 'Tanh', 'MatMul', 'Add', 'Softmax']
    """
    onnx = _require_onnx()
    onnx_model = to_onnx(model, name=name)
    onnx.save_model(onnx_model, path)
    return onnx_model
