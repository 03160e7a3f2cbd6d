"""Keeps a model's variables when a Keras step on JAX fails before its first result.

Keras' JAX trainer moves the variables' values into the state of its compiled step and clears
them on the variables (``_purge_model_variables``); it puts them back after each epoch, and
after a failure once a step has returned. A step that fails before (a trace-time error: a
loss refusing labels of a shape no earlier check saw, a data set's bad batch; or an interrupt)
left every weight cleared: ``get_weights``, ``save`` and the next ``fit`` raised a TypeError
("'NoneType' object is not callable"), and the trained weights were lost.
"""

import contextlib

import keras


def _state_variables(model):
    """The model's, its optimizer's and its metrics' variables, each once."""
    optimizer = getattr(model, "optimizer", None)
    groups = (model.variables, getattr(optimizer, "variables", ()),
              getattr(model, "metrics_variables", ()))
    return list({id(v): v for group in groups for v in group}.values())


@contextlib.contextmanager
def variables_kept(model, fitting=False):
    """On JAX, restores each variable that a failing ``fit``/``evaluate``/``predict`` left
    cleared to the value it held before (values not donated to a step: a trace-time error or
    an interrupt before the first step ran). ``fitting``: build the optimizer first (as
    ``fit`` does), so its variables are kept too. Elsewhere it does nothing.

    Example:
        with variables_kept(model, fitting=True):
            keras.Model.fit(model, data)
    """
    if keras.backend.backend() != "jax":
        yield
        return
    optimizer = getattr(model, "optimizer", None)
    if fitting and optimizer is not None and not optimizer.built and model.built:
        optimizer.build(model.trainable_variables)  # its variables too, before the step
    held = [(v, v._value) for v in _state_variables(model)]
    try:
        yield
    except BaseException:
        for variable, value in held:
            if (variable._value is None and value is not None
                    and not getattr(value, "is_deleted", lambda: False)()):
                variable._value = value
        raise
