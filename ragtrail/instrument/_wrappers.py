"""The wrapt proxies ``@monitored`` returns, copied and pickled as what they decorate is.

wrapt's proxies refuse ``copy``, ``deepcopy`` and ``pickle`` (it cannot know what a copy of an
arbitrary wrapper should be), so a decorated function broke ``ProcessPoolExecutor.map``, and
``copy.deepcopy`` of anything holding one (an app's config, a DSPy program and its tools, which
optimizers copy). Here a function stays one object under copying and is pickled by its name,
as Python does for plain functions; a bound method is pickled as its instance and name; a
wrapped callable object is copied by copying the object and wrapping the copy.
"""

from __future__ import annotations

import copy
import importlib
import types
from typing import TYPE_CHECKING, Any

import wrapt

__all__ = ["MonitoredFunction"]

_BY_NAME = (types.FunctionType, types.BuiltinFunctionType)

if TYPE_CHECKING:  # generic in wrapt 2's stubs only; wrapt 1.16 has no __class_getitem__
    _Bound = wrapt.BoundFunctionWrapper[..., Any]
    _Function = wrapt.FunctionWrapper[..., Any]
    _BoundType = type
else:
    _Bound = wrapt.BoundFunctionWrapper
    _Function = wrapt.FunctionWrapper
    _BoundType = type(_Bound)  # type; wrapt without its C extension has a metaclass of its own


def _attribute_at(module: str, qualname: str) -> Any:
    """What ``module.qualname`` names (unpickling a method taken off its class)."""
    found: Any = importlib.import_module(module)
    for name in qualname.split("."):
        found = getattr(found, name)
    return found


class _Rebinding(_BoundType):
    """Lets ``weakref.WeakMethod`` rebind a decorated method, as it does a plain one.

    WeakMethod keeps weak references to a method's ``__self__`` and ``__func__`` and, when
    called, rebuilds the method as ``type(method)(__func__, __self__)``; signal libraries
    (blinker, Django signals) hold their receivers that way. wrapt's constructor takes other
    arguments, so those two are turned into the binding wrapt itself would make.
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 2 and not kwargs:
            return _rebound(*args)
        return super().__call__(*args, **kwargs)


def _rebound(function: Any, owner: Any) -> Any:
    """The method ``function`` of ``owner`` (an instance, or a class for a class method)."""
    if isinstance(function, MonitoredFunction):  # an instance method's __func__
        return function.__get__(owner, type(owner))
    # A class method's __func__ is its plain function; the class gives the decorated method
    # back under its name. One it does not (a name-mangled ``__name``) runs unrecorded.
    method = getattr(owner, function.__name__, None)
    if getattr(method, "__func__", None) is function:
        return method
    return types.MethodType(function, owner)


class _MonitoredBound(_Bound, metaclass=_Rebinding):
    """A decorated method bound to its instance (or class)."""

    @property
    def __func__(self) -> Any:
        """For an instance method the decorated function, as a plain method's is the function
        in its class, so a method rebuilt from it (``WeakMethod``) still records its calls.
        A class method's stays its plain function: ``inspect`` reads the source there."""
        parent = self._self_parent
        if isinstance(parent.__wrapped__, (classmethod, staticmethod)):
            method: Any = self.__wrapped__
            return method.__func__
        return parent

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        if self._self_instance is not None:
            return getattr, (self._self_instance, self.__name__)
        # Taken off its class (a static or class method, say): found there again by name.
        qualname = self.__qualname__
        if "<locals>" in qualname:
            raise TypeError(f"cannot pickle {qualname}: a class defined inside a function "
                            "cannot be found again by name")
        return _attribute_at, (self.__module__, qualname)

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        if self._self_instance is None or isinstance(self._self_instance, type):
            return self
        instance = copy.deepcopy(self._self_instance, memo)
        return self._self_parent.__get__(instance, type(instance))


class MonitoredFunction(_Function):
    """What ``@monitored`` returns (see the module docstring)."""

    # wrapt binds every method call through this; type.__call__ makes the bound wrapper in C,
    # without _Rebinding.__call__, which only WeakMethod's two-argument call needs.
    __bound_function_wrapper__ = _BoundType.__call__.__get__(_MonitoredBound)

    def __reduce_ex__(self, protocol: Any) -> Any:
        if isinstance(self.__wrapped__, _BY_NAME):
            # pickle finds the name in the function's module, where it is this wrapper.
            return self.__qualname__
        raise TypeError(f"cannot pickle a @monitored {type(self.__wrapped__).__name__}: only "
                        "decorated functions and methods are found again by name (for a "
                        "callable object, decorate its class's __call__)")

    def __copy__(self) -> Any:
        return self._around(copy.copy(self.__wrapped__))

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return self._around(copy.deepcopy(self.__wrapped__, memo))

    def _around(self, wrapped: Any) -> Any:
        """Self for a function (copying returns it unchanged); else a wrapper of the copy."""
        if wrapped is self.__wrapped__:
            return self
        return type(self)(wrapped, self._self_wrapper)
